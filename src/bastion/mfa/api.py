"""Auth0's MFA API, for a password login that a rule sent to MFA (the `mfa_token` of `mfa_required`).

    POST /mfa/associate        Authorization: Bearer <mfa_token>, {"authenticator_types": ["otp"]}
                               -> {"authenticator_type": "otp", "secret", "barcode_uri", "recovery_codes": [...]}
    GET  /mfa/authenticators   Authorization: Bearer <mfa_token>
                               -> [{"id", "authenticator_type", "active"}]
    POST /mfa/challenge        {"client_id", "mfa_token", "challenge_type": "otp"} -> {"challenge_type": "otp"}

The login then finishes at /oauth/token with the `mfa-otp` grant (`mfa_token`, `otp`) or the
`mfa-recovery-code` grant (`mfa_token`, `recovery_code`), see oidc/grants.py. OOB factors
(push, SMS) are not offered: `challenge_type: oob` answers `unsupported_challenge_type`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.errors import OAuthError
from bastion.keys.access_tokens import bearer_token
from bastion.mfa.factors import associate_otp, enrolled_factors
from bastion.mfa.tokens import PendingMfa, open_mfa_token
from bastion.services import Services
from bastion.storage import users
from bastion.web import json_response, read_params

__all__ = ["MfaApi"]


class MfaApi:
    def __init__(self, services: Services):
        self.services = services

    def routes(self) -> list[Route]:
        return [
            Route("/mfa/associate", self.associate, methods=["POST"]),
            Route("/mfa/authenticators", self.authenticators, methods=["GET"]),
            Route("/mfa/challenge", self.challenge, methods=["POST"]),
        ]

    async def _pending(self, request: Request, params: dict[str, str] | None = None) -> PendingMfa:
        token = bearer_token(request.headers.get("authorization")) or (params or {}).get("mfa_token")
        if not token:
            raise OAuthError("unauthorized", "Missing mfa_token (Authorization: Bearer <mfa_token>)", 401)
        try:
            return await open_mfa_token(self.services, token)
        except OAuthError as error:
            raise OAuthError("invalid_token", error.description, 401) from None

    async def associate(self, request: Request) -> Response:
        params = await read_params(request)
        pending = await self._pending(request, params)
        kinds = params.get("authenticator_types")
        if kinds and "otp" not in kinds:
            raise OAuthError("unsupported_authenticator_type", "Only the otp authenticator type can be associated here")
        if any(f.type in ("otp", "webauthn-roaming", "webauthn-platform") for f in await enrolled_factors(self.services, pending.user_id)):
            raise OAuthError("access_denied", "User is already enrolled.", 403)
        async with self.services.database.reader() as session:
            user = await users.get_user(session, user_id=pending.user_id)
        if user is None:
            raise OAuthError("invalid_token", "The user no longer exists", 401)
        enrolment, recovery = await associate_otp(
            self.services, user_id=user.user_id, account_name=user.email or user.username or user.user_id
        )
        return json_response(
            {"authenticator_type": "otp", "secret": enrolment.secret, "barcode_uri": enrolment.uri, "recovery_codes": [recovery]}
        )

    async def authenticators(self, request: Request) -> Response:
        pending = await self._pending(request)
        factors = await enrolled_factors(self.services, pending.user_id)
        return json_response([
            {"id": f.id, "authenticator_type": f.type, "active": True, **({"name": f.name} if f.type != "recovery-code" else {})}
            for f in factors
        ])

    async def challenge(self, request: Request) -> Response:
        params = await read_params(request)
        pending = await self._pending(request, params)
        if params.get("client_id") and params["client_id"] != pending.client_id:
            raise OAuthError("invalid_request", "client_id does not match the mfa_token")
        kinds = (params.get("challenge_type") or "otp").split()
        if "otp" not in kinds:
            raise OAuthError("unsupported_challenge_type", "The user has no authenticator for this challenge type")
        factors = await enrolled_factors(self.services, pending.user_id)
        if not any(f.type == "otp" for f in factors):
            raise OAuthError("association_required", "The user has no authenticator yet: enrol one with /mfa/associate", 400)
        return json_response({"challenge_type": "otp"})
