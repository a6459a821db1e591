"""The user an upstream login (strategies `oidc` and `waad`) logs in: found by its identity
(provider, connection, the provider's id), created at its first login, and brought up to date
with what the provider says at every later one, as Auth0 does.

- The identity's `profile_data` is replaced by the provider's latest claims, and its upstream
  access token (Auth0 keeps it for `read:user_idp_tokens`) is stored sealed; the `Identity`
  record rules and the Management API see never carries it.
- The user's root attributes (email, name, picture...) follow the provider on each login,
  unless the connection's `set_user_root_attributes` is `on_first_login` (Auth0's option):
  then an administrator's or a rule's later edits stay.
- Two first logins of one person racing on two processes collide on the identity's unique key
  (and the user id): the loser finds the winner's user.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from bastion.login.federation import UpstreamAccount
from bastion.services import Services
from bastion.storage import identities
from bastion.storage import users as user_store
from bastion.storage.records import Connection, Identity, User

__all__ = ["AccountConflict", "sign_in_upstream_account", "ACCESS_TOKEN_PURPOSE"]

ACCESS_TOKEN_PURPOSE = "upstream-access-token"


class AccountConflict(Exception):
    """The connection already has another user with this email address."""


async def sign_in_upstream_account(services: Services, connection: Connection, account: UpstreamAccount, *, access_token: str | None) -> User:
    """The account's user, created or updated; its identity remembers the provider's profile and token."""
    sealed = (
        services.sealer.seal(access_token, purpose=ACCESS_TOKEN_PURPOSE)
        if access_token and connection.options.get("ext_access_token", True) is not False
        else None
    )
    key = {"provider": connection.strategy, "connection": connection.name, "external_id": account.external_id}
    async with services.database.reader() as session:
        user = await identities.find_user_by_identity(session, **key)
    if user is None:
        try:
            return await _create(services, connection, account, sealed)
        except IntegrityError:
            async with services.database.reader() as session:
                user = await identities.find_user_by_identity(session, **key)
            if user is None:  # not a race: the email belongs to another user of the connection
                raise AccountConflict() from None
    return await _update(services, connection, account, user, sealed)


async def _create(services: Services, connection: Connection, account: UpstreamAccount, sealed: str | None) -> User:
    async with services.database.transaction() as session:
        user = await user_store.insert_user(
            session,
            user_id=account.user_id,
            identity=Identity(
                provider=connection.strategy, connection=connection.name, external_id=account.external_id,
                is_social=False, profile_data=account.profile_data,
            ),
            connection=connection.name, user_metadata={}, app_metadata={}, logins_count=0, **account.profile,
        )
        if sealed:
            await identities.save_identity_profile(
                session, provider=connection.strategy, connection=connection.name, external_id=account.external_id,
                profile_data=account.profile_data, access_token_sealed=sealed,
            )
    return user


async def _update(services: Services, connection: Connection, account: UpstreamAccount, user: User, sealed: str | None) -> User:
    """The provider's latest word; an email another user of the connection holds is not taken over."""
    changes = _root_changes(connection, account, user)
    for attempt in (changes, {k: v for k, v in changes.items() if k not in ("email", "email_verified")}):
        try:
            async with services.database.transaction() as session:
                await identities.save_identity_profile(
                    session, provider=connection.strategy, connection=connection.name, external_id=account.external_id,
                    profile_data=account.profile_data, access_token_sealed=sealed,
                )
                if attempt:
                    user = await user_store.update_user(session, user_id=user.user_id, changes=attempt) or user
                else:
                    user = await user_store.get_user(session, user_id=user.user_id) or user
            return user
        except IntegrityError:
            continue
    return user


def _root_changes(connection: Connection, account: UpstreamAccount, user: User) -> dict[str, Any]:
    if connection.options.get("set_user_root_attributes") in ("on_first_login", "never_on_login"):
        return {}
    if user.connection != connection.name:
        return {}  # the identity is not the user's own: its profile belongs to another connection
    return {k: v for k, v in account.profile.items() if getattr(user, k) != v}
