"""Remember this browser: after a passed challenge, MFA is not asked again for 30 days.

The cookie holds a random handle; the database row (its digest, the user, the browser
binding cookie's digest, the expiry) decides. So the cookie is useless in another browser
or for another user, and an administrator can forget every browser of a user
(`POST /api/v2/users/{id}/multifactor/actions/invalidate-remember-browser`, as Auth0).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from starlette.responses import Response

from bastion.login.flow import REMEMBER_COOKIE
from bastion.login.sso import set_cookie
from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import authenticators

__all__ = ["remember_browser"]


async def remember_browser(services: Services, response: Response, *, user_id: str, browser: str, current: str | None) -> None:
    """Remember (user, browser) for the configured days; reuse the browser's handle if it has one."""
    handle = current if current and 20 <= len(current) <= 64 else new_handle(24)
    days = services.settings.mfa_remember_browser_days
    async with services.database.transaction() as session:
        await authenticators.remember_browser(
            session, handle_digest=digest(handle), user_id=user_id, browser_digest=digest(browser),
            expires_at=datetime.now(timezone.utc) + timedelta(days=days),
        )
    set_cookie(response, services, REMEMBER_COOKIE, handle, max_age=days * 86400)
