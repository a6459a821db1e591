"""The OIDC / OAuth 2.0 HTTP edge: parse, call the protocol and login steps, answer.

    GET|POST /authorize                        authorization request -> login page or code
    POST     /oauth/token                      grants (oidc/grants.py)
    GET|POST /userinfo                         OIDC Core §5.3
    POST     /oauth/revoke                     RFC 7009 (refresh tokens)
    GET      /.well-known/openid-configuration OIDC Discovery
    GET      /.well-known/jwks.json            RFC 7517
    GET      /v2/logout, GET|POST /oidc/logout Auth0 logout and OIDC RP-initiated logout
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import OAuthError, PageError
from bastion.events import EventType, record_event
from bastion.keys.access_tokens import InvalidAccessToken, bearer_token, verify_access_token
from bastion.keys.jose import JoseError, verify_jwt
from bastion.login.flow import LoginFlow
from bastion.login.pipeline import LoginContext
from bastion.login.sso import SESSION_COOKIE, end_sso_session
from bastion.oidc.authorize import RedirectError, validate_authorization_request
from bastion.oidc.client_auth import authenticate_client
from bastion.oidc.documents import DISCOVERY_CACHE, DISCOVERY_PATH, JWKS_CACHE, JWKS_PATH, discovery_json
from bastion.oidc.grants import TokenGrants
from bastion.oidc.responses import OidcResponder, redirect_to_client
from bastion.oidc.tokens import TokenIssuer, profile_claims, user_profile
from bastion.pages import Pages
from bastion.security.handles import digest
from bastion.services import Services
from bastion.storage import refresh_tokens
from bastion.storage import users as user_store
from bastion.tenant.tenant_settings import tenant_settings
from bastion.web import clean_params, client_ip, json_response, read_params, request_hostname

__all__ = ["OidcRoutes"]

log = logging.getLogger("bastion.oidc")


class OidcRoutes:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages
        self.issuer = TokenIssuer(services.settings, services.keyring)
        self.grants = TokenGrants(services, self.issuer)
        self.responder = OidcResponder(pages)
        self.flow: LoginFlow | None = None  # set by create_app: the flow knows every protocol's responder
        self._discovery = discovery_json(services)

    def routes(self) -> list[Route]:
        return [
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
            Route(DISCOVERY_PATH, self.discovery, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
            Route("/v2/logout", self.logout, methods=["GET"]),
            Route("/oidc/logout", self.oidc_logout, methods=["GET", "POST"]),
        ]

    # -- authorization endpoint -------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """RFC 6749 §4.1.1: validate, then answer from the SSO session or send the browser to log in."""
        params = clean_params(request.query_params.multi_items()) if request.method == "GET" else await read_params(request)
        try:
            authorization = await validate_authorization_request(params, self.services.tenant)
        except RedirectError as error:
            return self._redirect_error(error.redirect_uri, error.response_mode, error.state, error.error, error.description)
        assert self.flow is not None

        async def login_required() -> Response:
            return self._redirect_error(
                authorization.redirect_uri, authorization.response_mode, authorization.state, "login_required", "Login required",
            )

        return await self.flow.start(request, authorization, passive_failure=login_required)

    def _redirect_error(self, redirect_uri: str, response_mode: str, state: str | None, error: str, description: str) -> Response:
        return redirect_to_client(
            self.pages, redirect_uri=redirect_uri, response_mode=response_mode,
            params={"error": error, "error_description": description, "state": state},
        )

    # -- token endpoint -----------------------------------------------------

    async def token(self, request: Request) -> Response:
        params = await read_params(request)
        caller = await authenticate_client(request, params, self.services.tenant)
        body = await self.grants.handle(params.get("grant_type"), caller, params, _context(request))
        return json_response(body)

    # -- userinfo -----------------------------------------------------------

    async def userinfo(self, request: Request) -> Response:
        """OIDC Core §5.3: the claims the access token's scopes release, from the current profile."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None and request.method == "POST":
            token = (await read_params(request)).get("access_token")
        if not token:
            return _bearer_error("invalid_request", "Missing access token", 401)
        try:
            claims = await verify_access_token(
                self.services.keyring, token, issuer=self.services.settings.token_issuer,
                audience=self.services.settings.userinfo_audience,
            )
        except InvalidAccessToken as error:
            return _bearer_error("invalid_token", str(error), 401)
        scopes = str(claims.get("scope", "")).split()
        if "openid" not in scopes:
            return _bearer_error("insufficient_scope", "The access token lacks the openid scope", 403)
        async with self.services.database.reader() as session:
            user = await user_store.get_user(session, user_id=str(claims.get("sub")))
        if user is None:
            return _bearer_error("invalid_token", "The user no longer exists", 401)
        return json_response({"sub": user.user_id, **profile_claims(user_profile(user), scopes)})

    # -- revocation ---------------------------------------------------------

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: revoke a refresh token (and its family). Unknown tokens answer 200 too (§2.2)."""
        params = await read_params(request)
        caller = await authenticate_client(request, params, self.services.tenant)
        token = params.get("token")
        if not token:
            raise OAuthError("invalid_request", "Missing required parameter: token")
        async with self.services.database.transaction() as session:
            record = await refresh_tokens.find_refresh_token(session, token_digest=digest(token))
            if record is not None and record.client_id == caller.client.client_id:
                await refresh_tokens.revoke_refresh_family(session, family_id=record.family_id)
                await record_event(
                    session, EventType.SUCCESS_REVOCATION, description="Refresh token revoked",
                    client_id=caller.client.client_id, user_id=record.user_id, ip=client_ip(request),
                )
        return Response(status_code=200)

    # -- discovery and keys -------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return Response(self._discovery, media_type="application/json", headers={"Cache-Control": DISCOVERY_CACHE})

    async def jwks(self, request: Request) -> Response:
        return Response(
            await self.services.keyring.jwks_json(), media_type="application/json",
            headers={"Cache-Control": JWKS_CACHE},
        )

    # -- logout -------------------------------------------------------------

    async def logout(self, request: Request) -> Response:
        """Auth0's /v2/logout: end the SSO session; `returnTo` must be an allowed logout URL of
        `client_id`, or without a client_id one of the tenant's (tenant settings `allowed_logout_urls`)."""
        params = clean_params(request.query_params.multi_items())
        return_to = params.get("returnTo")
        client_id = params.get("client_id")
        if return_to and not client_id:
            if return_to not in (await tenant_settings(self.services)).allowed_logout_urls:
                raise PageError(
                    "Logout URL not allowed",
                    "The returnTo URL is not in the tenant's list of allowed logout URLs.",
                )
        elif return_to:
            client = await self.services.tenant.client(client_id)
            if client is None or return_to not in client.allowed_logout_urls:
                raise PageError(
                    "Logout URL not allowed",
                    "The returnTo URL is not in the application's list of allowed logout URLs.",
                )
        return await self._end_session(request, return_to, None, client_id)

    async def oidc_logout(self, request: Request) -> Response:
        """OpenID Connect RP-Initiated Logout 1.0 §2-3."""
        params = clean_params(request.query_params.multi_items()) if request.method == "GET" else await read_params(request)
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if hint:
            client_id = await self._client_from_id_token_hint(hint, client_id)
        post_logout = params.get("post_logout_redirect_uri")
        if post_logout:
            client = await self.services.tenant.client(client_id) if client_id else None
            if client is None or post_logout not in client.allowed_logout_urls:
                raise PageError(
                    "Logout URL not allowed",
                    "post_logout_redirect_uri is not in the application's list of allowed logout URLs.",
                )
        return await self._end_session(request, post_logout, params.get("state"), client_id)

    async def _client_from_id_token_hint(self, hint: str, client_id: str | None) -> str | None:
        keyset = await self.services.keyring.keyset()
        try:
            _header, claims = verify_jwt(hint, keyset)
        except (JoseError, ValueError, KeyError, TypeError):
            raise PageError("Invalid logout request", "The id_token_hint is not a valid ID token from this server.") from None
        if claims.get("iss") != self.services.settings.token_issuer:
            raise PageError("Invalid logout request", "The id_token_hint was issued by another server.")
        aud = claims.get("aud")
        if client_id and client_id != aud:
            raise PageError("Invalid logout request", "client_id does not match the id_token_hint.")
        return aud if isinstance(aud, str) else client_id

    async def _end_session(self, request: Request, return_to: str | None, state: str | None, client_id: str | None) -> Response:
        ended = await end_sso_session(self.services, request)
        if ended is not None:
            async with self.services.database.transaction() as session:
                await record_event(
                    session, EventType.SUCCESS_LOGOUT, description="User successfully logged out",
                    user_id=ended.user_id, client_id=client_id, ip=client_ip(request),
                    user_agent=request.headers.get("user-agent"),
                )
        if return_to:
            if state:
                parts = urlsplit(return_to)
                query = "&".join(q for q in (parts.query, urlencode({"state": state})) if q)
                return_to = urlunsplit(parts._replace(query=query))
            response: Response = RedirectResponse(return_to, status_code=302)
        else:
            response = self.pages.render("logged_out.html")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=self.services.settings.secure_cookies, httponly=True)
        return response


def _context(request: Request) -> LoginContext:
    return LoginContext(ip=client_ip(request), user_agent=request.headers.get("user-agent"), hostname=request_hostname(request))


def _bearer_error(error: str, description: str, status: int) -> Response:
    return json_response(
        {"error": error, "error_description": description},
        status,
        headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"'},
    )
