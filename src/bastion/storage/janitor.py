"""Deleting what has expired: codes, login transactions, SSO sessions, refresh tokens, one-time
codes (passwordless, MFA tokens, spent TOTP steps, emailed tickets), remembered browsers, and
the outbox entries that were delivered (a failed one is kept FAILED_DELIVERY_RETENTION, for
an operator to see and retry).

Run by `bastion janitor` (from cron or a timer, as Ory Hydra's janitor). Nothing here
is needed for correctness: every reader already refuses expired rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.tables import (
    AuthorizationCodeRow,
    DeliveryRow,
    LoginTransactionRow,
    OneTimeCodeRow,
    RefreshTokenRow,
    RememberedBrowserRow,
    SsoSessionRow,
)

__all__ = ["purge_expired", "FAILED_DELIVERY_RETENTION"]

FAILED_DELIVERY_RETENTION = timedelta(days=30)


async def purge_expired(session: AsyncSession, *, grace: timedelta = timedelta(days=1)) -> dict[str, int]:
    """Delete rows expired for longer than `grace` (kept that long so replays are still recognised)."""
    cutoff = datetime.now(timezone.utc) - grace
    counts = {}
    for name, table, condition in (
        ("authorization_codes", AuthorizationCodeRow, AuthorizationCodeRow.expires_at < cutoff),
        ("login_transactions", LoginTransactionRow, LoginTransactionRow.expires_at < cutoff),
        ("sso_sessions", SsoSessionRow, or_(SsoSessionRow.expires_at < cutoff, SsoSessionRow.revoked_at < cutoff)),
        ("refresh_tokens", RefreshTokenRow, RefreshTokenRow.expires_at < cutoff),
        ("one_time_codes", OneTimeCodeRow, OneTimeCodeRow.expires_at < cutoff),
        ("mfa_remembered_browsers", RememberedBrowserRow, RememberedBrowserRow.expires_at < cutoff),
        ("deliveries", DeliveryRow, or_(
            DeliveryRow.state.in_(("sent", "logged")) & (DeliveryRow.completed_at < cutoff),
            (DeliveryRow.state == "failed") & (DeliveryRow.completed_at < cutoff - FAILED_DELIVERY_RETENTION),
        )),
    ):
        result = await session.execute(delete(table).where(condition))
        counts[name] = result.rowcount
    return counts
