"""Enrolled second factors, stored as Auth0's authenticators.

- `otp`: a TOTP secret (RFC 6238, 30 s, 6 digits, SHA-1 as every authenticator app
  expects), sealed at rest. A code is accepted once: each used time step is recorded as
  a one-time row whose primary key refuses a second use, on any server process.
- `recovery-code`: one per user, made at the first enrolment and shown once; stored as
  a digest. Using it replaces it with a new one (as Auth0 does).

Authenticator ids follow Auth0's shape: `totp|dev_...`, `recovery-code|dev_...`.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyotp
import segno
from sqlalchemy.exc import IntegrityError

from bastion.security.handles import digest, new_id, same_digest
from bastion.services import Services
from bastion.storage import authenticators, one_time_codes
from bastion.storage.records import Authenticator

__all__ = [
    "OtpEnrolment",
    "start_otp_enrolment",
    "confirm_otp_enrolment",
    "verify_otp",
    "associate_otp",
    "use_recovery_code",
    "enrolled_factors",
    "qr_code_svg",
    "new_recovery_code",
]

SEAL_PURPOSE = "mfa-otp-secret"
_RECOVERY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class OtpEnrolment:
    authenticator_id: str
    secret: str
    uri: str  # otpauth://totp/... for a QR code


def new_recovery_code() -> str:
    return "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(24))


def _normalize_recovery(code: str) -> str:
    return "".join(c for c in code.upper() if c in _RECOVERY_ALPHABET)


def qr_code_svg(uri: str) -> str:
    """The otpauth URI as an SVG data URI, for an <img> (no script, no external request)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


async def enrolled_factors(services: Services, user_id: str) -> list[Authenticator]:
    async with services.database.reader() as session:
        return await authenticators.list_authenticators(session, user_id=user_id)


async def start_otp_enrolment(services: Services, *, user_id: str, account_name: str) -> OtpEnrolment:
    """A new, unconfirmed TOTP authenticator (an earlier unconfirmed one is dropped)."""
    secret = pyotp.random_base32(length=32)
    issuer = services.settings.issuer.split("://", 1)[-1]
    uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=issuer)
    async with services.database.transaction() as session:
        await authenticators.delete_user_authenticators(session, user_id=user_id, types=["otp"], unconfirmed_only=True)
        record = await authenticators.insert_authenticator(
            session, id=new_id("totp|dev_", 16), user_id=user_id, type="otp", name="Authenticator app",
            secret_sealed=services.sealer.seal(secret, purpose=SEAL_PURPOSE), secret_digest=None, credential={},
            confirmed=False,
        )
    return OtpEnrolment(authenticator_id=record.id, secret=secret, uri=uri)


async def _spend_step(services: Services, authenticator: Authenticator, code: str) -> bool:
    """True if `code` is valid now (±1 step) and this time step was not used before."""
    secret = services.sealer.open(authenticator.secret_sealed or "", purpose=SEAL_PURPOSE).decode()
    totp = pyotp.TOTP(secret)
    code = "".join(c for c in code if c.isdigit())
    if len(code) != 6:
        return False
    now = datetime.now(timezone.utc)
    for offset in (0, -1, 1):
        moment = now + timedelta(seconds=30 * offset)
        if secrets.compare_digest(totp.at(moment), code):
            step = int(moment.timestamp()) // 30
            try:
                async with services.database.transaction() as session:
                    await one_time_codes.insert_code(
                        session, id=digest(f"otp-step|{authenticator.id}|{step}"), purpose="otp-step", connection=None,
                        recipient=None, client_id=None, code_digest=digest(code), data={},
                        expires_at=now + timedelta(minutes=5),
                    )
            except IntegrityError:
                return False  # this code was already used
            return True
    return False


async def confirm_otp_enrolment(services: Services, *, user_id: str, authenticator_id: str, code: str) -> str | None:
    """Confirm an enrolment with its first code. Returns the recovery code to show once (a new
    one when the user had none), or None when the code is wrong. Raises LookupError if the
    enrolment does not exist."""
    async with services.database.reader() as session:
        record = await authenticators.get_authenticator(session, id=authenticator_id)
    if record is None or record.user_id != user_id or record.type != "otp" or record.confirmed:
        raise LookupError("no such enrolment")
    if not await _spend_step(services, record, code):
        return None
    recovery = new_recovery_code()
    async with services.database.transaction() as session:
        await authenticators.confirm_authenticator(session, id=record.id)
        await authenticators.delete_user_authenticators(session, user_id=user_id, types=["recovery-code"])
        await authenticators.insert_authenticator(
            session, id=new_id("recovery-code|dev_", 16), user_id=user_id, type="recovery-code", name="Recovery code",
            secret_sealed=None, secret_digest=digest(_normalize_recovery(recovery)), credential={}, confirmed=True,
        )
    return recovery


async def associate_otp(services: Services, *, user_id: str, account_name: str) -> tuple[OtpEnrolment, str]:
    """The MFA API's enrolment: a pending TOTP authenticator and a pending recovery code, both
    confirmed by the first good code (`verify_otp(..., confirm_pending=True)`)."""
    enrolment = await start_otp_enrolment(services, user_id=user_id, account_name=account_name)
    recovery = new_recovery_code()
    async with services.database.transaction() as session:
        await authenticators.delete_user_authenticators(session, user_id=user_id, types=["recovery-code"], unconfirmed_only=True)
        await authenticators.insert_authenticator(
            session, id=new_id("recovery-code|dev_", 16), user_id=user_id, type="recovery-code", name="Recovery code",
            secret_sealed=None, secret_digest=digest(_normalize_recovery(recovery)), credential={}, confirmed=False,
        )
    return enrolment, recovery


async def verify_otp(services: Services, *, user_id: str, code: str, confirm_pending: bool = False) -> bool:
    """A TOTP code of one of the user's authenticators; with `confirm_pending`, a pending
    (associated, unconfirmed) one counts too and is confirmed, with its recovery code."""
    async with services.database.reader() as session:
        candidates = await authenticators.list_authenticators(session, user_id=user_id, confirmed_only=not confirm_pending)
    for record in candidates:
        if record.type == "otp" and await _spend_step(services, record, code):
            async with services.database.transaction() as session:
                await authenticators.use_authenticator(session, id=record.id)
                if not record.confirmed:
                    await authenticators.confirm_authenticator(session, id=record.id)
                    pending = [a for a in candidates if a.type == "recovery-code" and not a.confirmed]
                    if pending:
                        await authenticators.delete_user_authenticators(session, user_id=user_id, types=["recovery-code"])
                        await authenticators.insert_authenticator(
                            session, id=pending[0].id, user_id=user_id, type="recovery-code", name="Recovery code",
                            secret_sealed=None, secret_digest=pending[0].secret_digest, credential={}, confirmed=True,
                        )
            return True
    return False


async def use_recovery_code(services: Services, *, user_id: str, code: str) -> str | None:
    """Spend the recovery code; returns the new one that replaces it, or None if it is wrong."""
    normalized = _normalize_recovery(code)
    for record in await enrolled_factors(services, user_id):
        if record.type == "recovery-code" and record.secret_digest and same_digest(normalized, record.secret_digest):
            replacement = new_recovery_code()
            async with services.database.transaction() as session:
                if not await authenticators.delete_authenticator(session, id=record.id):
                    return None  # spent by a concurrent request
                await authenticators.insert_authenticator(
                    session, id=new_id("recovery-code|dev_", 16), user_id=user_id, type="recovery-code", name="Recovery code",
                    secret_sealed=None, secret_digest=digest(_normalize_recovery(replacement)), credential={}, confirmed=True,
                )
            return replacement
    return None
