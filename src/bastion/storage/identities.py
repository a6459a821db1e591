"""Repository: identities looked up by who they are at their provider.

`users.insert_user` creates a user with its first identity. An upstream login (strategies
`oidc` and `waad`) needs the other direction: the user that owns the identity (provider,
connection, external_id: the table's unique key), and a place for what the provider last
said about it: its profile (`profile_data`) and its access token, which the caller seals
before it gets here and which never leaves through the `Identity` record.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage import users
from bastion.storage.records import User
from bastion.storage.tables import IdentityRow

__all__ = ["find_user_by_identity", "save_identity_profile", "get_identity_access_token_sealed"]


async def find_user_by_identity(session: AsyncSession, *, provider: str, connection: str, external_id: str) -> User | None:
    """The user whose identity this is, or None. A linked secondary is returned as itself: the
    login pipeline (`authenticate`) makes the login its primary's (docs/identities.md)."""
    user_id = await session.scalar(
        select(IdentityRow.user_id).where(
            IdentityRow.provider == provider, IdentityRow.connection == connection, IdentityRow.external_id == external_id
        )
    )
    return await users.get_user(session, user_id=user_id) if user_id else None


async def save_identity_profile(
    session: AsyncSession, *, provider: str, connection: str, external_id: str, profile_data: dict, access_token_sealed: str | None
) -> bool:
    """Replace what the provider said about the identity at its last login (profile and sealed
    access token; None clears a token the provider no longer gives). False if there is no such identity."""
    result = await session.execute(
        update(IdentityRow)
        .where(IdentityRow.provider == provider, IdentityRow.connection == connection, IdentityRow.external_id == external_id)
        .values(profile_data=profile_data, access_token_sealed=access_token_sealed)
    )
    return result.rowcount == 1


async def get_identity_access_token_sealed(session: AsyncSession, *, provider: str, connection: str, external_id: str) -> str | None:
    """The identity's upstream access token, still sealed (for `read:user_idp_tokens` callers only)."""
    return await session.scalar(
        select(IdentityRow.access_token_sealed).where(
            IdentityRow.provider == provider, IdentityRow.connection == connection, IdentityRow.external_id == external_id
        )
    )
