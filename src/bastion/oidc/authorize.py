"""RFC 6749 §4.1.1 / OIDC Core §3.1.2: validate an authorization request, step by step.

    check_client -> check_redirect_uri -> check_response_mode      (errors: a page)
    check_response_type -> check_grant_type -> parse_scopes
      -> check_audience -> check_pkce -> check_prompt -> check_max_age
                                                                   (errors: back to the redirect URI)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bastion.errors import OAuthError, PageError
from bastion.login.transaction import AuthorizationRequest
from bastion.storage.records import Client
from bastion.tenant.cache import TenantCache
from bastion.tenant.tenant_settings import requested_audience

__all__ = ["RedirectError", "validate_authorization_request"]

_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PROMPTS = {"none", "login", "consent", "select_account"}


class RedirectError(OAuthError):
    """An error that is safe to return to the (already validated) redirect URI."""

    def __init__(self, error: OAuthError, *, redirect_uri: str, state: str | None, response_mode: str):
        super().__init__(error.error, error.description, error.status)
        self.redirect_uri = redirect_uri
        self.state = state
        self.response_mode = response_mode


async def validate_authorization_request(params: Mapping[str, str], tenant: TenantCache) -> AuthorizationRequest:
    client = await check_client(params, tenant)
    redirect_uri = check_redirect_uri(params, client)
    response_mode = check_response_mode(params)
    state = params.get("state") or None
    try:
        check_response_type(params)
        check_grant_type(client)
        scopes = parse_scopes(params.get("scope"))
        audience = await check_audience(params.get("audience"), tenant)
        challenge, method = check_pkce(params, client)
        prompt = check_prompt(params.get("prompt"))
        max_age = check_max_age(params.get("max_age"))
    except OAuthError as error:
        raise RedirectError(error, redirect_uri=redirect_uri, state=state, response_mode=response_mode) from None
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        response_mode=response_mode,
        scopes=scopes,
        state=state,
        nonce=params.get("nonce") or None,
        audience=audience,
        prompt=prompt,
        max_age=max_age,
        code_challenge=challenge,
        code_challenge_method=method,
        acr_values=params.get("acr_values") or None,
        connection=params.get("connection") or None,
        login_hint=params.get("login_hint") or None,
        query={k: v[:2048] for k, v in list(params.items())[:64]},
    )


async def check_client(params: Mapping[str, str], tenant: TenantCache) -> Client:
    """The client exists. An unknown client cannot be redirected to: show a page."""
    client_id = params.get("client_id")
    if not client_id:
        raise PageError("Invalid request", "The request has no client_id.")
    client = await tenant.client(client_id)
    if client is None:
        raise PageError("Unknown application", "No application is registered with this client_id.", 400)
    return client


def check_redirect_uri(params: Mapping[str, str], client: Client) -> str:
    """RFC 9700 §2.1: the redirect URI matches a registered callback exactly."""
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        if len(client.callbacks) == 1:
            return client.callbacks[0]
        raise PageError("Invalid request", "The request has no redirect_uri.")
    if redirect_uri not in client.callbacks:
        raise PageError(
            "Callback URL mismatch",
            f"The redirect_uri {redirect_uri} is not in the list of allowed callback URLs of this application.",
        )
    return redirect_uri


def check_response_mode(params: Mapping[str, str]) -> str:
    mode = params.get("response_mode") or "query"
    if mode not in ("query", "form_post"):
        raise PageError("Invalid request", f"Unsupported response_mode {mode!r}: use query or form_post.")
    return mode


def check_response_type(params: Mapping[str, str]) -> None:
    """Only the authorization code flow (RFC 9700 §2.1.2: no implicit grant)."""
    response_type = params.get("response_type")
    if not response_type:
        raise OAuthError("invalid_request", "Missing required parameter: response_type")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", f"Unsupported response type: {response_type}")


def check_grant_type(client: Client) -> None:
    if "authorization_code" not in client.grant_types:
        raise OAuthError("unauthorized_client", "Grant type 'authorization_code' not allowed for the client.")


def parse_scopes(scope: str | None) -> list[str]:
    scopes: list[str] = []
    for value in (scope or "").split():
        if value not in scopes:
            scopes.append(value)
    return scopes


async def check_audience(audience: str | None, tenant: TenantCache) -> str | None:
    """The API named, else the tenant's default audience; it must exist."""
    audience = await requested_audience(tenant, audience)
    if not audience:
        return None
    if await tenant.resource_server(audience) is None:
        raise OAuthError("access_denied", f"Service not found: {audience}", 403)
    return audience


def check_pkce(params: Mapping[str, str], client: Client) -> tuple[str | None, str | None]:
    """RFC 7636 with RFC 9700 §2.1.1: S256 only; required for public clients."""
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method") or ("plain" if challenge else None)
    if not challenge:
        if client.is_public:
            raise OAuthError("invalid_request", "code_challenge is required for public clients (PKCE with S256)")
        return None, None
    if method != "S256":
        raise OAuthError("invalid_request", "code_challenge_method must be S256")
    if not _PKCE_CHALLENGE.match(challenge):
        raise OAuthError("invalid_request", "code_challenge is malformed")
    return challenge, method


def check_prompt(prompt: str | None) -> list[str]:
    values = (prompt or "").split()
    unknown = [v for v in values if v not in _PROMPTS]
    if unknown:
        raise OAuthError("invalid_request", f"Unsupported prompt value: {unknown[0]}")
    if "none" in values and len(values) > 1:
        raise OAuthError("invalid_request", "prompt=none cannot be combined with other values")
    return values


def check_max_age(max_age: str | None) -> int | None:
    if max_age in (None, ""):
        return None
    try:
        value = int(max_age)
    except ValueError:
        raise OAuthError("invalid_request", "max_age must be a non-negative integer") from None
    if value < 0:
        raise OAuthError("invalid_request", "max_age must be a non-negative integer")
    return value
