"""What every universal-login page does with its login transaction (login, sign-up, consent,
passwordless codes, MFA): find it only in the browser that started it and in the state the
page expects, check a POSTed form's CSRF token, and render a page that carries a fresh one.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bastion.errors import PageError
from bastion.login.pipeline import resume_login
from bastion.login.sso import BROWSER_COOKIE
from bastion.login.transaction import LoginState
from bastion.pages import Pages
from bastion.security.csrf import CsrfTokens
from bastion.services import Services
from bastion.storage.records import LoginTransactionRecord
from bastion.tenant.tenant_settings import tenant_settings
from bastion.web import read_form

__all__ = ["TransactionPages"]


class TransactionPages:
    """Base of the page classes; `expected_state` is the state their transactions are usually in."""

    expected_state = LoginState.AWAITING_LOGIN

    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages
        self.csrf = CsrfTokens(services.settings.secret_key or "")

    async def transaction(self, request: Request, state: str | None, expected: LoginState | None = None) -> LoginTransactionRecord:
        return await resume_login(
            self.services, state, browser=request.cookies.get(BROWSER_COOKIE), expected=expected or self.expected_state
        )

    async def form(self, request: Request, expected: LoginState | None = None) -> tuple[dict[str, str], LoginTransactionRecord]:
        """A POSTed form: the transaction it names, checked against its CSRF token."""
        form = await read_form(request)
        transaction = await self.transaction(request, form.get("state") or request.query_params.get("state"), expected)
        if not self.csrf.verify(form.get("csrf_token"), transaction.id, request.cookies.get(BROWSER_COOKIE, "")):
            raise PageError("Invalid request", "This form has expired or was not sent by this site. Go back and try again.", 403)
        return form, transaction

    async def branding(self) -> dict[str, str | None]:
        """The tenant's name and logo for a page (tenant settings `friendly_name`, `picture_url`):
        `tenant_name` replaces the product name the pages show, `logo_url` adds the logo."""
        settings = await tenant_settings(self.services)
        logo = settings.picture_url if settings.picture_url and settings.picture_url.startswith("https://") else None
        return {"tenant_name": settings.friendly_name, "logo_url": logo}  # the pages' CSP loads https images only

    def page(self, template: str, request: Request, transaction: LoginTransactionRecord, *, status: int = 200, **context) -> Response:
        return self.pages.render(
            template, status=status, state=transaction.id,
            csrf_token=self.csrf.issue(transaction.id, request.cookies.get(BROWSER_COOKIE, "")), **context,
        )
