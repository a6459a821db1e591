"""The keyring: the current signing key per algorithm and the published JWKS.

Keys live in the database (private halves sealed with the master key). Each
process caches the loaded keys and re-reads the list at most every `cache_ttl`
seconds, so a rotation by `bastion keys rotate` reaches every server process
within that time, and no request pays for loading a key.
"""

from __future__ import annotations

import asyncio
import json
import time

from bastion.keys.jose import ASYMMETRIC_ALGORITHMS, SigningKeyMaterial, generate_private_key, load_private_key, public_keyset
from bastion.security.handles import new_id
from bastion.security.sealing import Sealer
from bastion.storage import signing_keys
from bastion.storage.database import Database

__all__ = ["Keyring"]

_PURPOSE = "signing-key"


class Keyring:
    def __init__(self, database: Database, sealer: Sealer, *, default_alg: str = "RS256", cache_ttl: float = 5.0):
        self._database = database
        self._sealer = sealer
        self.default_alg = default_alg
        self._cache_ttl = cache_ttl
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()
        self._current: dict[str, SigningKeyMaterial] = {}
        self._materials: dict[str, SigningKeyMaterial] = {}
        self._jwks_json = b'{"keys":[]}'
        self._keyset = None

    async def ensure_keys(self) -> list[str]:
        """Generate a current key for every algorithm that has none. Returns the new kids."""
        async with self._database.transaction() as session:
            published = await signing_keys.list_published_keys(session, algs=ASYMMETRIC_ALGORITHMS)
            have = {k.alg for k in published if k.status == "current"}
            created = []
            for alg in ASYMMETRIC_ALGORITHMS:
                if alg not in have:
                    created.append(await self._insert_new_key(session, alg))
        self._loaded_at = -1e9
        return created

    async def rotate(self, alg: str | None = None) -> str:
        """A new current key for `alg`; the old one stays published as previous."""
        alg = alg or self.default_alg
        async with self._database.transaction() as session:
            await signing_keys.demote_keys(session, alg=alg)
            kid = await self._insert_new_key(session, alg)
        self._loaded_at = -1e9
        return kid

    async def _insert_new_key(self, session, alg: str) -> str:
        kid = new_id(length=24)
        pem, public_jwk = generate_private_key(alg, kid)
        await signing_keys.insert_signing_key(
            session,
            kid=kid,
            alg=alg,
            private_key_sealed=self._sealer.seal(pem, purpose=_PURPOSE),
            public_jwk=public_jwk,
        )
        return kid

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._cache_ttl:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._cache_ttl:
                return
            async with self._database.reader() as session:
                published = await signing_keys.list_published_keys(session, algs=ASYMMETRIC_ALGORITHMS)
            current: dict[str, SigningKeyMaterial] = {}
            materials: dict[str, SigningKeyMaterial] = {}
            for key in published:
                material = self._materials.get(key.kid) or load_private_key(
                    key.alg, key.kid, self._sealer.open(key.private_key_sealed, purpose=_PURPOSE)
                )
                materials[key.kid] = material
                if key.status == "current" and key.alg not in current:
                    current[key.alg] = material
            jwks = [k.public_jwk for k in published]
            self._materials = materials
            self._current = current
            self._jwks_json = json.dumps({"keys": jwks}, separators=(",", ":")).encode()
            self._keyset = public_keyset(jwks) if jwks else None
            self._loaded_at = time.monotonic()

    async def signer(self, alg: str | None = None) -> SigningKeyMaterial:
        await self._refresh()
        alg = alg or self.default_alg
        try:
            return self._current[alg]
        except KeyError:
            raise RuntimeError(f"no current {alg} signing key: run `bastion migrate` or `bastion keys rotate`") from None

    async def jwks_json(self) -> bytes:
        await self._refresh()
        return self._jwks_json

    async def keyset(self):
        await self._refresh()
        return self._keyset
