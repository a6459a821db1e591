"""The user a passwordless code logs in: found by address or number in the connection, or
created on the first successful code (as Auth0 does, unless the connection's options say
`disable_signup`), with the address or number marked verified.

A code that reaches the address of a linked secondary logs in its primary (docs/identities.md),
as its password would.

User ids are Auth0's: `email|<24 hex>` and `sms|<24 hex>`. A new sms user's id is derived
from the number (an HMAC under the master key), so two first logins racing on two
processes collide on the primary key instead of creating two users; nothing constrains
phone numbers to be unique otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.exc import IntegrityError

from bastion.services import Services
from bastion.storage import users as user_store
from bastion.storage.records import Connection, Identity, User
from bastion.tenant.linking import primary_of
from bastion.tenant.users import default_picture

__all__ = ["SignupDisabled", "find_or_create_user"]


class SignupDisabled(Exception):
    """No user has this address or number, and the connection does not accept sign-ups."""


async def _find(services: Services, connection: Connection, recipient: str) -> User | None:
    async with services.database.reader() as session:
        if connection.strategy == "email":
            return await user_store.find_user_by_login(session, connection=connection.name, login=recipient)
        return await user_store.find_user_by_phone(session, connection=connection.name, phone_number=recipient)


def _derived_id(services: Services, connection: Connection, recipient: str) -> str:
    key = hashlib.sha256(b"bastion-passwordless-user-v1|" + (services.settings.secret_key or "").encode()).digest()
    return hmac.new(key, f"{connection.name}|{recipient}".encode(), hashlib.sha256).hexdigest()[:24]


async def _insert(services: Services, connection: Connection, recipient: str, local_id: str) -> User:
    strategy = connection.strategy
    profile = (
        {"email": recipient, "email_verified": True, "nickname": recipient.split("@")[0], "picture": default_picture(recipient, recipient)}
        if strategy == "email"
        else {"phone_number": recipient, "phone_verified": True, "nickname": recipient, "picture": default_picture(None, recipient)}
    )
    async with services.database.transaction() as session:
        return await user_store.insert_user(
            session,
            user_id=f"{strategy}|{local_id}",
            identity=Identity(provider=strategy, connection=connection.name, external_id=local_id, is_social=False, profile_data={}),
            connection=connection.name, name=recipient, user_metadata={}, app_metadata={}, logins_count=0, **profile,
        )


async def _mark_verified(services: Services, connection: Connection, user: User) -> User:
    """A code that reached the address or number proves it: mark it verified (once)."""
    field = "email_verified" if connection.strategy == "email" else "phone_verified"
    if getattr(user, field):
        return user
    async with services.database.transaction() as session:
        return await user_store.update_user(session, user_id=user.user_id, changes={field: True}) or user


async def _login_user(services: Services, user: User) -> User | None:
    """The user a code for `user`'s address logs in: `user`, or its primary (tenant/linking.py)."""
    async with services.database.reader() as session:
        return await primary_of(session, user=user)


async def find_or_create_user(services: Services, connection: Connection, recipient: str) -> tuple[User, bool]:
    """The user the recipient's code logs in (the primary, when the recipient's account is a
    linked secondary), and whether it was just created. Raises SignupDisabled."""
    user = await _find(services, connection, recipient)
    if user is not None:
        primary = await _login_user(services, await _mark_verified(services, connection, user))
        if primary is not None:
            return primary, False
        # The primary was deleted meanwhile, and this account with it: a first login again.
    if connection.options.get("disable_signup"):
        raise SignupDisabled()
    local_ids = [_derived_id(services, connection, recipient) if connection.strategy == "sms" else secrets.token_hex(12)]
    local_ids.append(secrets.token_hex(12))  # if the derived id is taken by a user whose number changed since
    for local_id in local_ids:
        try:
            return await _insert(services, connection, recipient, local_id), True
        except IntegrityError:  # a parallel first login created the user (or the id is taken)
            user = await _find(services, connection, recipient)
            primary = await _login_user(services, user) if user is not None else None
            if primary is not None:
                return primary, False
    raise RuntimeError("could not create the passwordless user")
