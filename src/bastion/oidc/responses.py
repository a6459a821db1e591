"""RFC 6749 §4.1.2 and OAuth 2.0 Form Post Response Mode: answering the redirect URI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.responses import RedirectResponse, Response

from bastion.login.transaction import AuthorizationRequest, LoginDenial, LoginResult
from bastion.pages import Pages
from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import authorization_codes

__all__ = ["redirect_to_client", "issue_authorization_code", "OidcResponder"]


def redirect_to_client(pages: Pages, *, redirect_uri: str, response_mode: str, params: dict[str, str | None]) -> Response:
    """Send parameters to the client's redirect URI by query string or auto-submitted form."""
    fields = [(k, v) for k, v in params.items() if v is not None]
    if response_mode == "form_post":
        return pages.form_post(redirect_uri, fields)
    parts = urlsplit(redirect_uri)
    query = "&".join(q for q in (parts.query, urlencode(fields)) if q)
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302, headers={"Cache-Control": "no-store"})


async def issue_authorization_code(services: Services, request: AuthorizationRequest, result: LoginResult) -> str:
    """RFC 6749 §4.1.2: a single-use code, bound to the client, redirect URI and PKCE challenge."""
    code = new_handle(32)
    async with services.database.transaction() as session:
        await authorization_codes.insert_authorization_code(
            session,
            code_digest=digest(code),
            client_id=request.client_id,
            user_id=result.user_id,
            redirect_uri=request.redirect_uri,
            grant=result.to_json(),
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=services.settings.authorization_code_lifetime),
        )
    return code


class OidcResponder:
    """Turns a completed login into the authorization response."""

    def __init__(self, pages: Pages):
        self._pages = pages

    async def __call__(self, services: Services, request: AuthorizationRequest, result: LoginResult | LoginDenial) -> Response:
        if isinstance(result, LoginDenial):
            return redirect_to_client(
                self._pages, redirect_uri=request.redirect_uri, response_mode=request.response_mode,
                params={"error": result.error, "error_description": result.description, "state": request.state},
            )
        code = await issue_authorization_code(services, request, result)
        return redirect_to_client(
            self._pages,
            redirect_uri=request.redirect_uri,
            response_mode=request.response_mode,
            params={"code": code, "state": request.state},
        )
