"""/u/mfa/webauthn: security keys and passkeys (W3C Web Authentication Level 3, with py_webauthn).

    GET  /u/mfa/webauthn/enroll?state=   registration options; the page's script calls navigator.credentials.create()
    POST /u/mfa/webauthn/enroll          the new credential (JSON): verified, stored as webauthn-roaming|platform
    GET  /u/mfa/webauthn?state=          authentication options for the user's credentials; navigator.credentials.get()
    POST /u/mfa/webauthn                 the assertion: challenge, origin, RP id, signature and sign count checked

The relying party is the issuer: RP id = its host name, origin = its scheme://host[:port].
A challenge is a one_time_codes row bound to the login transaction and to its ceremony; it is
spent (compare-and-set) before the answer is verified, so each answer works once, on any
server process. The sign count is updated with a compare-and-set on the authenticator's last
use, so a cloned key racing the real one loses.

Enrolment is offered only to a user with no second factor yet: with one, a password alone must
not be able to add another. The first enrolment also makes the recovery code (shown once), as
the authenticator app's does.

This is the only module that imports py_webauthn.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bastion.mfa.factors import enrolled_factors, new_recovery_code
from bastion.mfa.pages import WEBAUTHN_TYPES, MfaPages
from bastion.security.handles import digest, new_handle, new_id
from bastion.services import Services
from bastion.settings import Settings
from bastion.storage import authenticators, one_time_codes
from bastion.storage.records import Authenticator, LoginTransactionRecord, User

__all__ = ["WebAuthnPages", "relying_party"]

log = logging.getLogger("bastion.mfa.webauthn")

CHALLENGE_PURPOSE = "webauthn-challenge"
CHALLENGE_LIFETIME = timedelta(minutes=5)
CEREMONY_TIMEOUT_MS = 180_000
SECOND_FACTORS = ("otp", *WEBAUTHN_TYPES)  # what a user can be challenged with (not the recovery code)
_TRANSPORTS = {t.value for t in AuthenticatorTransport}


def relying_party(settings: Settings) -> tuple[str, str]:
    """WebAuthn §5.1.3/§7.1: the RP id (the issuer's host name) and the expected origin."""
    parts = urlsplit(settings.issuer)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return parts.hostname or "", f"{parts.scheme}://{parts.hostname}{port}"


class CeremonyFailed(Exception):
    """The browser's answer is not acceptable; the message is for the person."""


# -- challenges: issued once, spent once ------------------------------------------------


async def issue_challenge(services: Services, transaction: LoginTransactionRecord, *, ceremony: str) -> bytes:
    """A random challenge for this transaction and ceremony ("registration" or "authentication")."""
    challenge = new_handle(32)
    async with services.database.transaction() as session:
        await one_time_codes.insert_code(
            session, id=digest(f"{CHALLENGE_PURPOSE}|{challenge}"), purpose=CHALLENGE_PURPOSE, connection=None,
            recipient=None, client_id=transaction.client_id, code_digest=digest(challenge),
            data={"transaction": transaction.id, "ceremony": ceremony},
            expires_at=datetime.now(timezone.utc) + CHALLENGE_LIFETIME,
        )
    return base64url_to_bytes(challenge)


async def spend_challenge(services: Services, transaction: LoginTransactionRecord, *, ceremony: str, client_data_json: bytes) -> bytes:
    """The challenge the browser signed, if this server issued it for this transaction and
    ceremony and it was not spent, expired or used before (it is spent now, whatever follows)."""
    try:
        challenge = bytes_to_base64url(parse_client_data_json(client_data_json).challenge)
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise CeremonyFailed("The answer from your security key could not be read. Try again.") from None
    row_id = digest(f"{CHALLENGE_PURPOSE}|{challenge}")
    async with services.database.transaction() as session:
        row = await one_time_codes.get_code(session, id=row_id)
        if (
            row is None
            or row.purpose != CHALLENGE_PURPOSE
            or row.data.get("transaction") != transaction.id
            or row.data.get("ceremony") != ceremony
            or not await one_time_codes.consume_code(session, id=row_id)
        ):
            raise CeremonyFailed("This attempt expired or was already used. Try again.")
    return base64url_to_bytes(challenge)


# -- the two ceremonies --------------------------------------------------------------------


def _descriptor(record: Authenticator) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in record.credential.get("transports") or [] if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(record.credential["credential_id"]), transports=transports or None)


def registration_options(settings: Settings, user: User, *, challenge: bytes, existing: list[Authenticator]) -> dict[str, Any]:
    """WebAuthn §5.4: PublicKeyCredentialCreationOptions, as JSON for the page's script."""
    rp_id, _origin = relying_party(settings)
    name = user.email or user.username or user.user_id
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_id,
        user_id=user.user_id.encode()[:64],
        user_name=name,
        user_display_name=name,
        challenge=challenge,
        timeout=CEREMONY_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(a) for a in existing if a.type in WEBAUTHN_TYPES],
    )
    return json.loads(options_to_json(options))


def authentication_options(settings: Settings, *, challenge: bytes, credentials: list[Authenticator]) -> dict[str, Any]:
    """WebAuthn §5.5: PublicKeyCredentialRequestOptions for the user's own credentials only."""
    rp_id, _origin = relying_party(settings)
    options = generate_authentication_options(
        rp_id=rp_id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
        allow_credentials=[_descriptor(a) for a in credentials],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return json.loads(options_to_json(options))


async def register_credential(services: Services, transaction: LoginTransactionRecord, *, user_id: str, answer: str) -> tuple[Authenticator, str | None]:
    """WebAuthn §7.1: verify a new credential and store it. Returns it, and the recovery code to
    show once when the user had none."""
    try:
        credential = parse_registration_credential_json(answer)
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise CeremonyFailed("The answer from your security key could not be read. Try again.") from None
    challenge = await spend_challenge(services, transaction, ceremony="registration", client_data_json=credential.response.client_data_json)
    rp_id, origin = relying_party(services.settings)
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin)
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        log.info("webauthn registration refused for %s: %s", user_id, error)
        raise CeremonyFailed("Your security key could not be registered. Try again.") from None
    platform = credential.authenticator_attachment is not None and credential.authenticator_attachment.value == "platform"
    kind = "webauthn-platform" if platform else "webauthn-roaming"
    credential_id = bytes_to_base64url(verified.credential_id)
    existing = await enrolled_factors(services, user_id)
    if any(a.type in WEBAUTHN_TYPES and a.credential.get("credential_id") == credential_id for a in existing):
        raise CeremonyFailed("This security key is already registered.")
    recovery = None if any(a.type == "recovery-code" for a in existing) else new_recovery_code()
    async with services.database.transaction() as session:
        record = await authenticators.insert_authenticator(
            session, id=new_id(f"{kind}|dev_", 16), user_id=user_id, type=kind,
            name="Passkey" if platform else "Security key", secret_sealed=None, secret_digest=None, confirmed=False,
            credential={
                "credential_id": credential_id,
                "public_key": bytes_to_base64url(verified.credential_public_key),
                "sign_count": verified.sign_count,
                "transports": [t.value for t in credential.response.transports or []],
                "aaguid": verified.aaguid,
                "user_verified": verified.user_verified,
                "backed_up": verified.credential_backed_up,
            },
        )
        await authenticators.confirm_authenticator(session, id=record.id)  # confirmed, and used now
        if recovery is not None:
            await authenticators.insert_authenticator(
                session, id=new_id("recovery-code|dev_", 16), user_id=user_id, type="recovery-code", name="Recovery code",
                secret_sealed=None, secret_digest=digest(recovery), credential={}, confirmed=True,
            )
    return record, recovery


async def verify_assertion(services: Services, transaction: LoginTransactionRecord, *, user_id: str, answer: str) -> Authenticator:
    """WebAuthn §7.2: the assertion of one of the user's credentials, with a fresh challenge and
    a sign count above the stored one (WebAuthn §6.1.1); the new count is stored."""
    try:
        credential = parse_authentication_credential_json(answer)
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise CeremonyFailed("The answer from your security key could not be read. Try again.") from None
    challenge = await spend_challenge(services, transaction, ceremony="authentication", client_data_json=credential.response.client_data_json)
    credential_id = bytes_to_base64url(credential.raw_id)
    record = next(
        (a for a in await enrolled_factors(services, user_id) if a.type in WEBAUTHN_TYPES and a.credential.get("credential_id") == credential_id),
        None,
    )
    if record is None:
        raise CeremonyFailed("This security key is not registered for your account.")
    rp_id, origin = relying_party(services.settings)
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=base64url_to_bytes(record.credential["public_key"]),
            credential_current_sign_count=int(record.credential.get("sign_count") or 0),
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        log.info("webauthn assertion refused for %s (%s): %s", user_id, record.id, error)
        raise CeremonyFailed("Your security key could not be verified. Try again.") from None
    async with services.database.transaction() as session:
        used = await authenticators.use_authenticator(
            session, id=record.id, expected_last_used=record.last_used_at,
            credential={**record.credential, "sign_count": verified.new_sign_count},
        )
    if not used:
        raise CeremonyFailed("Your security key was used at the same time elsewhere. Try again.")
    return record


# -- the pages --------------------------------------------------------------------------


class WebAuthnPages:
    """The enrolment and challenge pages; everything else about the login is MfaPages'."""

    def __init__(self, mfa_pages: MfaPages):
        self.mfa = mfa_pages
        self.services = mfa_pages.services

    def routes(self) -> list[Route]:
        return [
            Route("/u/mfa/webauthn/enroll", self.enroll, methods=["GET", "POST"]),
            Route("/u/mfa/webauthn", self.challenge, methods=["GET", "POST"]),
        ]

    async def enroll(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.mfa.transaction(request, request.query_params.get("state"))
            form: dict[str, str] = {}
        else:
            form, transaction = await self.mfa.form(request)
        factors = await enrolled_factors(self.services, transaction.user_id or "")
        if not self._allowed(transaction) or any(f.type in SECOND_FACTORS for f in factors):
            return _to_mfa(transaction)  # a user with a factor is challenged, never offered a new one
        user = await self.mfa.user(transaction)
        error = None
        if request.method == "POST":
            try:
                _record, recovery = await register_credential(self.services, transaction, user_id=user.user_id, answer=form.get("credential", ""))
            except CeremonyFailed as failure:
                error = str(failure)
            else:
                await self.mfa.record_enrolment(request, transaction, description="Security key or passkey enrolled", factor="security key or passkey")
                return await self.mfa.passed(request, transaction, factor="webauthn", new_recovery_code=recovery)
        challenge = await issue_challenge(self.services, transaction, ceremony="registration")
        options = registration_options(self.services.settings, user, challenge=challenge, existing=factors)
        return self._render("mfa_webauthn_enroll.html", request, transaction, options, status=400 if error else 200, error=error)

    async def challenge(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.mfa.transaction(request, request.query_params.get("state"))
            form: dict[str, str] = {}
        else:
            form, transaction = await self.mfa.form(request)
        factors = await enrolled_factors(self.services, transaction.user_id or "")
        credentials = [f for f in factors if f.type in WEBAUTHN_TYPES]
        if not self._allowed(transaction) or not credentials:
            return _to_mfa(transaction)
        error = None
        if request.method == "POST":
            try:
                await verify_assertion(self.services, transaction, user_id=transaction.user_id or "", answer=form.get("credential", ""))
            except CeremonyFailed as failure:
                outcome = await self.mfa.failed(request, transaction, factor="webauthn")
                if isinstance(outcome, Response):
                    return outcome  # too many failures: the application gets access_denied
                transaction, error = outcome, str(failure)
            else:
                return await self.mfa.passed(request, transaction, factor="webauthn")
        challenge = await issue_challenge(self.services, transaction, ceremony="authentication")
        options = authentication_options(self.services.settings, challenge=challenge, credentials=credentials)
        return self._render(
            "mfa_webauthn.html", request, transaction, options, status=400 if error else 200, error=error,
            has_otp=any(f.type == "otp" for f in factors),
        )

    def _allowed(self, transaction: LoginTransactionRecord) -> bool:
        """`duo` goes to Duo; `google-authenticator` means the authenticator app only."""
        return self.mfa.provider(transaction) in ("any", "guardian")

    def _render(self, template: str, request: Request, transaction: LoginTransactionRecord, options: dict[str, Any], *, status: int, **context: Any) -> Response:
        """The page with its script allowed by a per-response nonce (the other pages allow none)."""
        nonce = new_handle(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action *; frame-ancestors 'none'; base-uri 'none'"
        )
        return self.mfa.page(
            template, request, transaction, status=status, options=options, nonce=nonce,
            headers={"Content-Security-Policy": csp}, **context,
        )


def _to_mfa(transaction: LoginTransactionRecord) -> Response:
    return RedirectResponse(f"/u/mfa?{urlencode({'state': transaction.id})}", status_code=303)

