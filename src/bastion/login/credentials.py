"""Password authentication against a database connection, with brute-force protection.

Shared by the login page and the password grants, so both count failures the
same way: after `BASTION_BRUTE_FORCE_MAX_ATTEMPTS` (10) failures for one user
from one IP, that pair is blocked (as Auth0 does) until an administrator removes
the block (`DELETE /api/v2/user-blocks/{id}`) or the password is changed.

The password checked is that of the account it belongs to; the user who logs in is that
account's primary when it is a linked secondary (docs/identities.md): failures are counted
on the account whose password was wrong, `blocked` is the primary's.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.events import EventType, record_event
from bastion.security.passwords import verify_password
from bastion.services import Services
from bastion.storage import login_attempts
from bastion.storage import users as user_store
from bastion.storage.records import User
from bastion.tenant.linking import primary_of

__all__ = ["LoginFailure", "authenticate_password", "BLOCKED_MESSAGE"]

BLOCKED_MESSAGE = (
    "Your account has been blocked after multiple consecutive login attempts. "
    "Contact your administrator, or change your password, to unblock it."
)


@dataclass
class LoginFailure(Exception):
    code: str  # wrong_credentials | too_many_attempts | blocked_user
    message: str


async def authenticate_password(
    services: Services, *, connection: str, login: str, password: str, ip: str, client_id: str | None, user_agent: str | None
) -> User:
    """The user these credentials log in (their account's primary, when it is linked), or
    LoginFailure (and the failure is logged and counted)."""
    settings = services.settings
    async with services.database.reader() as session:
        user = await user_store.find_user_by_login(session, connection=connection, login=login)
        failed, blocked = await login_attempts.failures(session, user_id=user.user_id, ip=ip) if user else (0, False)
        primary = await primary_of(session, user=user) if user else None
    if blocked:
        assert user is not None
        async with services.database.transaction() as session:
            await record_event(
                session, EventType.BLOCKED_ACCOUNT, description=BLOCKED_MESSAGE, user_id=user.user_id,
                user_name=login, ip=ip, client_id=client_id, connection=connection, user_agent=user_agent,
            )
        raise LoginFailure("too_many_attempts", BLOCKED_MESSAGE)
    password_ok = await verify_password(user.password_hash if user else None, password)
    if user is None or primary is None or not password_ok:
        async with services.database.transaction() as session:
            if user is not None:
                await login_attempts.record_failure(
                    session, user_id=user.user_id, ip=ip, max_attempts=settings.brute_force_max_attempts
                )
            await record_event(
                session,
                EventType.FAILED_LOGIN_PASSWORD if user else EventType.FAILED_LOGIN_USERNAME,
                description="Wrong email or password.",
                user_id=user.user_id if user else None,
                user_name=login, ip=ip, client_id=client_id, connection=connection, user_agent=user_agent,
            )
        raise LoginFailure("wrong_credentials", "Wrong email or password.")
    if primary.blocked:
        raise LoginFailure("blocked_user", "user is blocked")
    if failed:  # a success wipes the count (a login without earlier failures writes nothing here)
        async with services.database.transaction() as session:
            await login_attempts.clear_failures(session, user_id=user.user_id, ip=ip)
    return primary
