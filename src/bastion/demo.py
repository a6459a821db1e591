"""The demo tenant (`bastion demo`) and a tiny relying party at /demo that logs in through Bastion.

The relying party is a real OAuth client: it sends the browser to /authorize with
PKCE, exchanges the code at /oauth/token over HTTP, checks the ID token against
the JWKS and shows its claims. It is served only when BASTION_DEMO is true.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.keys.jose import public_keyset, verify_jwt
from bastion.pages import Pages
from bastion.services import Services
from bastion.storage import clients as client_store
from bastion.storage import users as user_store
from bastion.tenant.bootstrap import DEFAULT_CONNECTION, enable_connection_for_client
from bastion.tenant.clients import client_secret, create_client
from bastion.tenant.users import create_database_user

__all__ = ["DEMO_CLIENT_ID", "DEMO_EMAIL", "DEMO_PASSWORD", "seed_demo", "DemoRoutes"]

DEMO_CLIENT_ID = "bastion-demo-app"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "Demo-Passw0rd!"
_COOKIE = "bastion_demo"


async def seed_demo(services: Services) -> dict[str, str]:
    """Create (idempotently) the demo application and the demo user."""
    base = services.settings.issuer
    async with services.database.transaction() as session:
        client = await client_store.get_client(session, client_id=DEMO_CLIENT_ID)
        if client is None:
            client, _ = await create_client(
                session, services.sealer, name="Bastion Demo App", app_type="regular_web", client_id=DEMO_CLIENT_ID,
                callbacks=[f"{base}/demo/callback"], allowed_logout_urls=[f"{base}/demo"],
                grant_types=["authorization_code", "refresh_token", "password"],
                token_endpoint_auth_method="client_secret_basic",
            )
        else:
            await client_store.update_client(
                session, client_id=DEMO_CLIENT_ID,
                changes={"callbacks": [f"{base}/demo/callback"], "allowed_logout_urls": [f"{base}/demo"]},
            )
        await enable_connection_for_client(session, connection_name=DEFAULT_CONNECTION, client_id=DEMO_CLIENT_ID)
        if await user_store.find_user_by_login(session, connection=DEFAULT_CONNECTION, login=DEMO_EMAIL) is None:
            await create_database_user(
                session, connection=DEFAULT_CONNECTION, email=DEMO_EMAIL, password=DEMO_PASSWORD, email_verified=True,
                profile={"given_name": "Dana", "family_name": "Demo", "name": "Dana Demo"},
                user_metadata={"favourite_colour": "teal"},
            )
    services.tenant.invalidate()
    return {"url": f"{base}/demo", "email": DEMO_EMAIL, "password": DEMO_PASSWORD, "client_id": DEMO_CLIENT_ID}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class DemoRoutes:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages

    def routes(self) -> list[Route]:
        return [Route("/demo", self.start, methods=["GET"]), Route("/demo/callback", self.callback, methods=["GET"])]

    async def start(self, request: Request) -> Response:
        base = self.services.settings.issuer
        if request.query_params.get("login") is None:
            return self.pages.render("demo.html", login_url="/demo?login=1", email=DEMO_EMAIL, password=DEMO_PASSWORD)
        state, verifier, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "client_id": DEMO_CLIENT_ID, "response_type": "code", "redirect_uri": f"{base}/demo/callback",
                "scope": "openid profile email offline_access", "state": state, "nonce": nonce,
                "code_challenge": _s256(verifier), "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"/authorize?{query}", status_code=302)
        response.set_cookie(_COOKIE, f"{state}.{verifier}.{nonce}", max_age=600, httponly=True, samesite="lax",
                            secure=self.services.settings.secure_cookies, path="/demo")
        return response

    async def callback(self, request: Request) -> Response:
        base = self.services.settings.issuer
        state, _, rest = request.cookies.get(_COOKIE, "").partition(".")
        verifier, _, nonce = rest.partition(".")
        if request.query_params.get("error"):
            return self.pages.error("Login failed", request.query_params.get("error_description") or request.query_params["error"])
        if not state or request.query_params.get("state") != state:
            return self.pages.error("Demo login failed", "The state does not match: start again from /demo.")
        async with self.services.database.reader() as session:
            client = await client_store.get_client(session, client_id=DEMO_CLIENT_ID)
        if client is None:
            return self.pages.error("No demo", "Run `bastion demo` first.", status=404)
        async with httpx.AsyncClient(verify=False, timeout=10) as http:  # noqa: S501 - talks to this very server
            token = await http.post(
                f"{base}/oauth/token",
                data={"grant_type": "authorization_code", "code": request.query_params.get("code", ""),
                      "redirect_uri": f"{base}/demo/callback", "code_verifier": verifier},
                auth=(DEMO_CLIENT_ID, client_secret(self.services.sealer, client) or ""),
            )
            jwks = (await http.get(f"{base}/.well-known/jwks.json")).json()
        if token.status_code != 200:
            return self.pages.error("Code exchange failed", token.text)
        tokens = token.json()
        _header, claims = verify_jwt(tokens["id_token"], public_keyset(jwks["keys"]))
        if claims.get("nonce") != nonce:
            return self.pages.error("Demo login failed", "The ID token's nonce does not match.")
        logout = f"/v2/logout?{urlencode({'client_id': DEMO_CLIENT_ID, 'returnTo': f'{base}/demo'})}"
        response = self.pages.render("demo_result.html", claims=claims, scope=tokens.get("scope"),
                                     has_refresh="refresh_token" in tokens, logout_url=logout)
        response.delete_cookie(_COOKIE, path="/demo")
        return response
