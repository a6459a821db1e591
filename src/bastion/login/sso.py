"""Single sign-on sessions: a random cookie value, stored only as its SHA-256 digest.

The cookie is HttpOnly; over https it is `Secure; SameSite=None` (so silent
authentication in an iframe works, as with Auth0), over plain http `SameSite=Lax`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import sso_sessions
from bastion.storage.records import SsoSession
from bastion.tenant.tenant_settings import tenant_settings

__all__ = ["SESSION_COOKIE", "BROWSER_COOKIE", "current_sso_session", "end_sso_session", "set_cookie", "browser_id"]

SESSION_COOKIE = "bastion_session"
BROWSER_COOKIE = "bastion_browser"


async def current_sso_session(services: Services, request: Request) -> SsoSession | None:
    """The browser's live SSO session, by the tenant's session lifetimes now
    (tenant/tenant_settings.py: the tenant settings, else BASTION_SESSION_*LIFETIME)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    settings = await tenant_settings(services)
    async with services.database.transaction() as session:
        record = await sso_sessions.get_live_sso_session(
            session, cookie_digest=digest(cookie), idle_seconds=settings.idle_session_lifetime,
            lifetime_seconds=settings.session_lifetime,
        )
        if record is not None:
            await sso_sessions.touch_sso_session(session, cookie_digest=digest(cookie))
    return record


async def end_sso_session(services: Services, request: Request) -> SsoSession | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    async with services.database.transaction() as session:
        return await sso_sessions.revoke_sso_session(session, cookie_digest=digest(cookie))


def set_cookie(response: Response, services: Services, name: str, value: str, *, max_age: int | None) -> None:
    secure = services.settings.secure_cookies
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
    )


def browser_id(request: Request) -> tuple[str, bool]:
    """The browser's binding id from its cookie, or a new one. Returns (id, is_new)."""
    value = request.cookies.get(BROWSER_COOKIE)
    if value and 20 <= len(value) <= 64:
        return value, False
    return new_handle(24), True
