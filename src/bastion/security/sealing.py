"""Secrets at rest: AES-256-GCM under a key derived from BASTION_SECRET_KEY (HKDF-SHA256).

Sealed values are text: `v1.` + base64url(nonce || ciphertext || tag). The purpose
string is bound as associated data, so a value sealed for one column cannot be
opened as another.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Sealer", "SealingError"]


class SealingError(Exception):
    """A sealed value could not be opened: wrong master key or tampered data."""


class Sealer:
    def __init__(self, master_key: str):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"bastion-sealing-v1", info=b"at-rest").derive(
            master_key.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes | str, *, purpose: str) -> str:
        if isinstance(plaintext, str):
            plaintext = plaintext.encode()
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, purpose.encode())
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, sealed: str, *, purpose: str) -> bytes:
        if not sealed.startswith("v1."):
            raise SealingError("unknown sealed format")
        raw = sealed[3:]
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        try:
            return self._aead.decrypt(data[:12], data[12:], purpose.encode())
        except InvalidTag as exc:
            raise SealingError("cannot open a sealed value: is BASTION_SECRET_KEY the one it was sealed with?") from exc
