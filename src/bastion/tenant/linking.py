"""Account linking (Auth0's user account linking; docs/identities.md).

    link_accounts    a user becomes the secondary of a primary: it keeps its row and its
                     credentials, its identities show on the primary, and it is no user of
                     its own any more (its sessions and refresh tokens end)
    unlink_account   the secondary is a user of its own again
    primary_of       the user a login with some user's credentials is for: every credential
                     check ends here, so a secondary always logs in as its primary

One level only: a primary is never a secondary, and a secondary has no secondaries. Both
users are locked while a link is checked and written, so two links made at once cannot
build a chain.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage import refresh_tokens, sso_sessions
from bastion.storage import users as user_store
from bastion.storage.records import User

__all__ = ["LinkRefused", "link_accounts", "unlink_account", "primary_of", "has_verified_contact"]


class LinkRefused(Exception):
    """Why a link or an unlink cannot be made. `reason` is one of: same_user, no_primary,
    no_secondary, already_linked, has_linked_users, unverified, main_identity, not_linked."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def has_verified_contact(user: User) -> bool:
    """Whether the account's address is proven: its email, or (an account without email,
    such as a passwordless SMS user) its phone number."""
    if user.email:
        return user.email_verified
    return bool(user.phone_number) and user.phone_verified


async def primary_of(session: AsyncSession, *, user: User) -> User | None:
    """`user` itself, or the primary it is linked to. None when the primary is gone (its
    secondaries go with it, so this is a login racing a deletion)."""
    if user.linked_to is None:
        return user
    primary = await user_store.get_user(session, user_id=user.linked_to)
    if primary is None or primary.linked_to is not None:  # a chain is never followed (linking refuses one)
        return None
    return primary


async def link_accounts(session: AsyncSession, *, primary_id: str, secondary_id: str, force: bool = False) -> User:
    """Link `secondary_id` to `primary_id`; returns the primary, with the secondary's identities.

    Both accounts' addresses must be verified unless `force`: linking merges two people's
    access into one account, and an unverified email proves nothing about who owns it (the
    account-takeover pattern of linking by a matching email). Raises LinkRefused.
    """
    if primary_id == secondary_id:
        raise LinkRefused("same_user", "Main identity and the new one are the same.")
    users = await user_store.lock_users(session, user_ids=[primary_id, secondary_id])
    primary, secondary = users.get(primary_id), users.get(secondary_id)
    if primary is None or primary.linked_to is not None:
        raise LinkRefused("no_primary", "The user does not exist.")
    if secondary is None:
        raise LinkRefused("no_secondary", "The secondary account does not exist.")
    if secondary.linked_to is not None:
        raise LinkRefused("already_linked", "The secondary account is already linked to a user.")
    if await user_store.has_linked_users(session, user_id=secondary.user_id):
        raise LinkRefused(
            "has_linked_users", "The secondary account has linked accounts of its own: unlink them first."
        )
    if not force:
        unverified = [u.user_id for u in (primary, secondary) if not has_verified_contact(u)]
        if unverified:
            raise LinkRefused(
                "unverified",
                f"Accounts are linked only when both email addresses are verified ({', '.join(unverified)} is not). "
                'Send "force": true to link them anyway.',
            )
    await user_store.set_linked_to(session, user_id=secondary.user_id, primary_id=primary.user_id)
    # The secondary is no user of its own any more: what it was signed in to ends; its next
    # login, with the same credentials, is the primary's.
    await sso_sessions.revoke_user_sso_sessions(session, user_id=secondary.user_id)
    await refresh_tokens.revoke_user_refresh_tokens(session, user_id=secondary.user_id)
    linked = await user_store.get_user(session, user_id=primary.user_id)
    assert linked is not None
    return linked


async def unlink_account(session: AsyncSession, *, primary_id: str, provider: str, external_id: str) -> User:
    """Unlink the secondary holding identity (`provider`, `external_id`) from `primary_id`; it is
    a user of its own again (its row, credentials and metadata as they were). Returns the
    primary. Raises LinkRefused."""
    users = await user_store.lock_users(session, user_ids=[primary_id])
    primary = users.get(primary_id)
    if primary is None or primary.linked_to is not None:
        raise LinkRefused("no_primary", "The user does not exist.")
    matches = [i for i in primary.identities if i.provider == provider and i.external_id == external_id]
    if not matches and external_id.startswith(f"{provider}|"):  # Auth0 accepts the full user id too
        short = external_id[len(provider) + 1:]
        matches = [i for i in primary.identities if i.provider == provider and i.external_id == short]
    if not matches:
        raise LinkRefused("not_linked", "The identity is not linked to this user.")
    secondary_id = next((i.linked_user_id for i in matches if i.linked_user_id), None)
    if secondary_id is None:
        raise LinkRefused("main_identity", "The main identity of a user cannot be unlinked.")
    await user_store.set_linked_to(session, user_id=secondary_id, primary_id=None)
    unlinked = await user_store.get_user(session, user_id=primary.user_id)
    assert unlinked is not None
    return unlinked
