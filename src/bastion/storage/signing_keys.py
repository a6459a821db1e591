"""Repository: token signing keys (private halves sealed at rest)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.storage.records import SigningKey, record_from_row
from bastion.storage.tables import SigningKeyRow

__all__ = ["insert_signing_key", "list_published_keys", "demote_keys"]


async def insert_signing_key(
    session: AsyncSession, *, kid: str, alg: str, private_key_sealed: str, public_jwk: dict
) -> SigningKey:
    row = SigningKeyRow(
        kid=kid,
        alg=alg,
        private_key_sealed=private_key_sealed,
        public_jwk=public_jwk,
        status="current",
        created_at=datetime.now(timezone.utc),
        rotated_at=None,
    )
    session.add(row)
    await session.flush()
    return record_from_row(SigningKey, row)


async def list_published_keys(session: AsyncSession, *, algs: tuple[str, ...]) -> list[SigningKey]:
    """Current and previous keys of `algs` (the JWKS, or the SAML certificates), newest first."""
    rows = await session.scalars(
        select(SigningKeyRow)
        .where(SigningKeyRow.status.in_(["current", "previous"]), SigningKeyRow.alg.in_(algs))
        .order_by(SigningKeyRow.created_at.desc())
    )
    return [record_from_row(SigningKey, r) for r in rows]


async def demote_keys(session: AsyncSession, *, alg: str) -> None:
    """Before a new current key of `alg`: previous keys retire, the current one becomes previous."""
    now = datetime.now(timezone.utc)
    await session.execute(
        update(SigningKeyRow)
        .where(SigningKeyRow.alg == alg, SigningKeyRow.status == "previous")
        .values(status="retired")
    )
    await session.execute(
        update(SigningKeyRow)
        .where(SigningKeyRow.alg == alg, SigningKeyRow.status == "current")
        .values(status="previous", rotated_at=now)
    )
