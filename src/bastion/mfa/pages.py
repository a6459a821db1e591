"""/u/mfa: the second factor a rule asked for, in the browser.

    GET  /u/mfa?state=                 the user's factor: challenge it, or enrol one (none yet),
                                       or Duo's Universal Prompt (provider duo)
    GET|POST /u/mfa/otp/enroll         TOTP enrolment: QR code and secret, confirmed by a first code
    POST /u/mfa/otp                    TOTP challenge
    GET|POST /u/mfa/recovery           a recovery code instead (a new one replaces it)
    POST /u/mfa/continue               after the page that shows a new recovery code

Providers: `any` and `guardian` offer every enrolled factor (TOTP, WebAuthn) and enrolment
in either; `google-authenticator` means TOTP only; `duo` goes to Duo (duo.py).
A passed challenge adds `mfa` to the login's methods; with `allow_remember_browser`
(the default) the browser is remembered for 30 days (remember.py). Five wrong codes
end the login with access_denied.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.emails.account import send_automatic_email
from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.flow import REMEMBER_COOKIE, LoginFlow
from bastion.login.forms import TransactionPages
from bastion.login.pipeline import advance, count_mfa_failure, pass_mfa
from bastion.login.sso import BROWSER_COOKIE
from bastion.login.transaction import LoginState
from bastion.mfa.factors import (
    confirm_otp_enrolment,
    enrolled_factors,
    qr_code_svg,
    start_otp_enrolment,
    use_recovery_code,
    verify_otp,
)
from bastion.mfa.remember import remember_browser
from bastion.pages import Pages
from bastion.services import Services
from bastion.storage import users
from bastion.storage.records import LoginTransactionRecord, User


__all__ = ["MfaPages", "MAX_MFA_FAILURES"]

MAX_MFA_FAILURES = 5
WEBAUTHN_TYPES = ("webauthn-roaming", "webauthn-platform")


class MfaPages(TransactionPages):
    """Its `transaction`, `form` and `page` (TransactionPages) serve webauthn.py and duo.py too."""

    expected_state = LoginState.AWAITING_MFA

    def __init__(self, services: Services, pages: Pages, flow: LoginFlow):
        super().__init__(services, pages)
        self.flow = flow

    def routes(self) -> list[Route]:
        return [
            Route("/u/mfa", self.start, methods=["GET"]),
            Route("/u/mfa/otp/enroll", self.otp_enroll, methods=["GET", "POST"]),
            Route("/u/mfa/otp", self.otp, methods=["POST"]),
            Route("/u/mfa/recovery", self.recovery, methods=["GET", "POST"]),
            Route("/u/mfa/continue", self.continue_login, methods=["POST"]),
        ]

    # -- shared by every factor (webauthn.py and duo.py use these too) ---------------

    async def user(self, transaction: LoginTransactionRecord) -> User:
        assert transaction.user_id is not None
        async with self.services.database.reader() as session:
            user = await users.get_user(session, user_id=transaction.user_id)
        if user is None:
            raise PageError("Login expired", "This account no longer exists.")
        return user

    @staticmethod
    def provider(transaction: LoginTransactionRecord) -> str:
        return (transaction.progress.get("mfa") or {}).get("provider", "any")

    async def passed(self, request: Request, transaction: LoginTransactionRecord, *, factor: str, new_recovery_code: str | None = None) -> Response:
        """The factor is proven: record it, remember the browser if allowed, and let the login go on
        (after showing a new recovery code, when there is one)."""
        transaction = await pass_mfa(self.services, transaction)
        await self._event(request, transaction, EventType.MFA_SUCCEEDED, f"Second factor passed: {factor}")
        if new_recovery_code:
            response = self.page("mfa_recovery_code.html", request, transaction, recovery_code=new_recovery_code)
        else:
            response = await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))
        if (transaction.progress.get("mfa") or {}).get("allow_remember_browser", True) and request.cookies.get(BROWSER_COOKIE):
            await remember_browser(
                self.services, response, user_id=transaction.user_id or "", browser=request.cookies[BROWSER_COOKIE],
                current=request.cookies.get(REMEMBER_COOKIE),
            )
        return response

    async def failed(self, request: Request, transaction: LoginTransactionRecord, *, factor: str) -> LoginTransactionRecord | Response:
        """A wrong answer: counted; past the limit the application gets access_denied (a Response)."""
        await self._event(request, transaction, EventType.MFA_FAILED, f"Wrong second factor: {factor}")
        transaction = await count_mfa_failure(self.services, transaction, limit=MAX_MFA_FAILURES)
        if transaction.state == LoginState.DECIDED.value:
            return await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))
        return transaction

    async def _event(self, request: Request, transaction: LoginTransactionRecord, event: str, description: str) -> None:
        context = self.flow.context(request)
        async with self.services.database.transaction() as session:
            await record_event(
                session, event, description=description, user_id=transaction.user_id, client_id=transaction.client_id,
                ip=context.ip, user_agent=context.user_agent,
            )

    async def record_enrolment(self, request: Request, transaction: LoginTransactionRecord, *, description: str, factor: str) -> None:
        """A factor was added: the log event, and the `enrollment_email` telling the user (so that a
        factor added by someone else does not go unnoticed)."""
        context = self.flow.context(request)
        async with self.services.database.transaction() as session:
            await record_event(
                session, EventType.MFA_ENROLLED, description=description, user_id=transaction.user_id,
                client_id=transaction.client_id, ip=context.ip, user_agent=context.user_agent,
            )
            user = await users.get_user(session, user_id=transaction.user_id or "")
            if user is not None and user.email:
                await send_automatic_email(self.services, session, "enrollment_email", user=user, client_id=transaction.client_id,
                                         factor=factor)

    def _to(self, path: str, transaction: LoginTransactionRecord, **params: str) -> Response:
        return RedirectResponse(f"{path}?{urlencode({'state': transaction.id, **params})}", status_code=303)

    # -- /u/mfa ----------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        transaction = await self.transaction(request, request.query_params.get("state"))
        provider = self.provider(transaction)
        if provider == "duo":
            return self._to("/u/mfa/duo", transaction)
        factors = await enrolled_factors(self.services, transaction.user_id or "")
        has_otp = any(f.type == "otp" for f in factors)
        has_webauthn = any(f.type in WEBAUTHN_TYPES for f in factors) and provider != "google-authenticator"
        wanted = request.query_params.get("factor")
        if wanted == "webauthn" and has_webauthn:
            return self._to("/u/mfa/webauthn", transaction)
        if has_otp and wanted in (None, "otp"):
            return self.page("mfa_otp.html", request, transaction, has_webauthn=has_webauthn)
        if has_webauthn:
            return self._to("/u/mfa/webauthn", transaction)
        if provider == "google-authenticator":
            return self._to("/u/mfa/otp/enroll", transaction)
        return self.page("mfa_enroll.html", request, transaction)

    # -- TOTP ------------------------------------------------------------------------

    async def _has_factor(self, transaction: LoginTransactionRecord) -> bool:
        factors = await enrolled_factors(self.services, transaction.user_id or "")
        return any(f.type == "otp" or f.type in WEBAUTHN_TYPES for f in factors)

    async def otp_enroll(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"))
            if await self._has_factor(transaction):
                return self._to("/u/mfa", transaction)  # enrolled already: the challenge, never a new factor
            user = await self.user(transaction)
            enrolment = await start_otp_enrolment(self.services, user_id=user.user_id, account_name=user.email or user.username or user.user_id)
            return self.page(
                "mfa_otp_enroll.html", request, transaction, qr_code=qr_code_svg(enrolment.uri), secret=enrolment.secret,
                authenticator_id=enrolment.authenticator_id,
            )
        form, transaction = await self.form(request)
        if await self._has_factor(transaction):
            # A password alone must not add a factor to an account that has one (it would pass MFA).
            raise PageError("Already enrolled", "This account already has a second factor. Go back and use it.", 403)
        try:
            recovery = await confirm_otp_enrolment(
                self.services, user_id=transaction.user_id or "", authenticator_id=form.get("authenticator_id", ""), code=form.get("code", ""),
            )
        except LookupError:
            return self._to("/u/mfa/otp/enroll", transaction)
        if recovery is None:
            outcome = await self.failed(request, transaction, factor="otp enrolment")
            if isinstance(outcome, Response):
                return outcome
            user = await self.user(transaction)
            enrolment = await start_otp_enrolment(self.services, user_id=user.user_id, account_name=user.email or user.username or user.user_id)
            return self.page(
                "mfa_otp_enroll.html", request, outcome, status=400, qr_code=qr_code_svg(enrolment.uri), secret=enrolment.secret,
                authenticator_id=enrolment.authenticator_id, error="That code is not right. Scan the new QR code and try again.",
            )
        await self.record_enrolment(request, transaction, description="Authenticator app enrolled", factor="authenticator app")
        return await self.passed(request, transaction, factor="otp", new_recovery_code=recovery)

    async def otp(self, request: Request) -> Response:
        form, transaction = await self.form(request)
        if await verify_otp(self.services, user_id=transaction.user_id or "", code=form.get("code", "")):
            return await self.passed(request, transaction, factor="otp")
        outcome = await self.failed(request, transaction, factor="otp")
        if isinstance(outcome, Response):
            return outcome
        factors = await enrolled_factors(self.services, transaction.user_id or "")
        return self.page(
            "mfa_otp.html", request, outcome, status=400, error="That code is not right, or was already used. Try the next one.",
            has_webauthn=any(f.type in WEBAUTHN_TYPES for f in factors) and self.provider(outcome) != "google-authenticator",
        )

    # -- recovery code ---------------------------------------------------------------

    async def recovery(self, request: Request) -> Response:
        if request.method == "GET":
            transaction = await self.transaction(request, request.query_params.get("state"))
            return self.page("mfa_recovery.html", request, transaction)
        form, transaction = await self.form(request)
        replacement = await use_recovery_code(self.services, user_id=transaction.user_id or "", code=form.get("code", ""))
        if replacement is not None:
            await self._event(request, transaction, EventType.MFA_RECOVERY_SUCCEEDED, "Recovery code used")
            return await self.passed(request, transaction, factor="recovery-code", new_recovery_code=replacement)
        await self._event(request, transaction, EventType.MFA_RECOVERY_FAILED, "Wrong recovery code")
        outcome = await self.failed(request, transaction, factor="recovery-code")
        if isinstance(outcome, Response):
            return outcome
        return self.page("mfa_recovery.html", request, outcome, status=400, error="That recovery code is not right.")

    async def continue_login(self, request: Request) -> Response:
        """After the new recovery code was shown: the login goes on."""
        _form, transaction = await self.form(request, LoginState.DECIDED)
        return await self.flow.respond(await advance(self.services, transaction, context=self.flow.context(request)))
