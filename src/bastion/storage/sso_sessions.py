"""Repository: single sign-on sessions (the cookie value is stored only as a digest)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import SsoSession, record_from_row
from bastion.storage.tables import SsoSessionRow

__all__ = ["add_session_methods", "insert_sso_session", "get_live_sso_session", "touch_sso_session", "revoke_sso_session", "revoke_user_sso_sessions"]


_TABLE = SsoSessionRow.__table__
# Read and touched at every login on an SSO session: Core statements built once (core_rows.py).
_SELECT = select(_TABLE).where(_TABLE.c.cookie_digest == bindparam("digest"))
_TOUCH = update(_TABLE).where(_TABLE.c.cookie_digest == bindparam("digest")).values(last_seen_at=bindparam("now"))


async def insert_sso_session(
    session: AsyncSession, *, cookie_digest: str, sid: str, user_id: str, auth_time: datetime, methods: list, expires_at: datetime
) -> SsoSession:
    now = datetime.now(timezone.utc)
    row = SsoSessionRow(
        cookie_digest=cookie_digest,
        sid=sid,
        user_id=user_id,
        auth_time=auth_time,
        methods=methods,
        created_at=now,
        last_seen_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    session.add(row)
    await session.flush()
    return record_from_row(SsoSession, row)


async def get_live_sso_session(
    session: AsyncSession, *, cookie_digest: str, idle_seconds: int, lifetime_seconds: int | None = None
) -> SsoSession | None:
    """The session if it is neither revoked, expired nor idle for longer than `idle_seconds`.
    A `lifetime_seconds` shorter than the one the session started with ends it sooner (a longer
    one does not extend it: its `expires_at` stays), as Auth0 applies changed session lifetimes."""
    row = (await session.execute(_SELECT, {"digest": cookie_digest})).first()
    now = datetime.now(timezone.utc)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if lifetime_seconds is not None and row.created_at + timedelta(seconds=lifetime_seconds) <= now:
        return None
    if (now - row.last_seen_at).total_seconds() > idle_seconds:
        return None
    return record_from_row(SsoSession, row)


async def touch_sso_session(session: AsyncSession, *, cookie_digest: str) -> None:
    await session.execute(_TOUCH, {"digest": cookie_digest, "now": datetime.now(timezone.utc)})


async def revoke_sso_session(session: AsyncSession, *, cookie_digest: str) -> SsoSession | None:
    row = await session.get(SsoSessionRow, cookie_digest)
    if row is None:
        return None
    row.revoked_at = datetime.now(timezone.utc)
    await session.flush()
    return record_from_row(SsoSession, row)


async def revoke_user_sso_sessions(session: AsyncSession, *, user_id: str) -> None:
    await session.execute(
        update(SsoSessionRow)
        .where(SsoSessionRow.user_id == user_id, SsoSessionRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(timezone.utc))
    )


async def add_session_methods(session: AsyncSession, *, sid: str, methods: list[str]) -> None:
    """The session learns more authentication methods (`mfa` after a second factor)."""
    row = await session.scalar(select(SsoSessionRow).where(SsoSessionRow.sid == sid))
    if row is not None:
        row.methods = list(dict.fromkeys([*row.methods, *methods]))
        await session.flush()
