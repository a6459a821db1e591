"""The two published documents, answered at the edge of the app.

Every relying party and resource server fetches the discovery document and the JWKS, and
both are ready-made bytes (the discovery document is built once; the keyring keeps the JWKS
serialized). Through Starlette a GET for them costs more in routing and middleware than in
the answer itself, so this ASGI middleware, the first one, answers GET and HEAD on these two
paths directly (docs/performance.md). Other methods, and any failure to produce the bytes,
fall through to the routes in oidc/routes.py, which answer the same way (or with the error).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.oidc.grants import PASSWORD_REALM_GRANT
from bastion.passwordless.grant import PASSWORDLESS_OTP_GRANT
from bastion.services import Services

__all__ = ["DISCOVERY_PATH", "JWKS_PATH", "DISCOVERY_CACHE", "JWKS_CACHE", "PublishedDocuments", "discovery_document", "discovery_json"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_CACHE = "public, max-age=300"
JWKS_CACHE = "public, max-age=60"


class PublishedDocuments:
    def __init__(self, app: ASGIApp, *, services: Services):
        self.app = app
        self.keyring = services.keyring
        self.discovery = discovery_json(services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == DISCOVERY_PATH:
                await self._answer(scope, send, self.discovery, DISCOVERY_CACHE)
                return
            if path == JWKS_PATH:
                try:
                    body = await self.keyring.jwks_json()
                except Exception:  # noqa: BLE001 - the route answers, or reports the error as every route does
                    body = None
                if body is not None:
                    await self._answer(scope, send, body, JWKS_CACHE)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, send: Send, body: bytes, cache_control: str) -> None:
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                (b"cache-control", cache_control.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def discovery_json(services: Services) -> bytes:
    """The discovery document as served: built once per app."""
    return json.dumps(discovery_document(services), separators=(",", ":")).encode()


def discovery_document(services: Services) -> dict:
    """OpenID Connect Discovery 1.0 §3, with Auth0's endpoint paths."""
    base = services.settings.issuer
    return {
        "issuer": services.settings.token_issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "end_session_endpoint": f"{base}/oidc/logout",
        "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": [
            "authorization_code", "refresh_token", "client_credentials", "password", PASSWORD_REALM_GRANT, PASSWORDLESS_OTP_GRANT,
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "aud", "auth_time", "created_at", "email", "email_verified", "exp", "family_name", "given_name", "iat",
            "identities", "iss", "name", "nickname", "phone_number", "picture", "sub", "sid", "nonce", "amr", "acr",
        ],
        "request_uri_parameter_supported": False,
        "request_parameter_supported": False,
        "frontchannel_logout_supported": False,
    }
