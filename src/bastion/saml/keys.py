"""The SAML signing key and its self-signed X.509 certificate.

Stored like the token signing keys (`signing_keys`, algorithm `SAML`, the private half
sealed under the master key, the certificate in the public column), generated on first
start, rotated by `bastion keys rotate --saml`: the new key signs at once, the previous
certificate stays in the metadata until the next rotation so service providers that
read metadata can trust both meanwhile. Each process loads the key once and re-reads
the list at most every `cache_ttl` seconds.

A rule may sign one response with its own pair (`saml_configuration.cert` / `.key`); those
are loaded once per process too (loading an RSA key costs tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bastion.security.handles import new_id
from bastion.security.sealing import Sealer
from bastion.storage import signing_keys
from bastion.storage.database import Database

__all__ = ["SAML_ALG", "SamlKey", "SamlKeys", "self_signed_certificate", "key_pair_from_pem", "load_certificate", "KeyPairError"]

SAML_ALG = "SAML"
_PURPOSE = "saml-signing-key"
CERTIFICATE_YEARS = 10


@dataclass(frozen=True)
class SamlKey:
    """A loaded key pair: what signxml signs with, and the certificate it embeds."""

    kid: str
    private_key: rsa.RSAPrivateKey
    certificate_pem: str

    @property
    def certificate_base64(self) -> str:
        """The DER certificate in base64, as metadata's and a signature's <X509Certificate> hold it."""
        return "".join(line for line in self.certificate_pem.strip().splitlines() if "-----" not in line)


class KeyPairError(ValueError):
    """A rule's `cert`/`key` pair that cannot sign (malformed PEM, a key that does not match)."""


def load_certificate(pem: str) -> x509.Certificate:
    """A certificate as operators paste it: PEM, Auth0's `\\n`-escaped one-line PEM, or bare
    base64 (as metadata holds it). Raises ValueError."""
    pem = pem.replace("\\n", "\n").strip()
    if "-----BEGIN" not in pem:
        pem = "-----BEGIN CERTIFICATE-----\n" + pem + "\n-----END CERTIFICATE-----"
    return x509.load_pem_x509_certificate(pem.encode())


def self_signed_certificate(private_key: rsa.RSAPrivateKey, common_name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CERTIFICATE_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@lru_cache(maxsize=32)
def key_pair_from_pem(certificate_pem: str, key_pem: str) -> SamlKey:
    """A rule's pair, loaded once per process. Auth0's `\\n`-escaped strings are accepted."""
    certificate_pem = certificate_pem.replace("\\n", "\n").strip() + "\n"
    key_pem = key_pem.replace("\\n", "\n").strip() + "\n"
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        private_key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as problem:
        raise KeyPairError(f"the certificate or key is not a valid PEM ({problem})") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise KeyPairError("the key must be an RSA private key")
    if private_key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise KeyPairError("the key does not match the certificate")
    fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
    return SamlKey(kid=f"rule-{fingerprint}", private_key=private_key, certificate_pem=certificate_pem)


class SamlKeys:
    def __init__(self, database: Database, sealer: Sealer, *, issuer: str, cache_ttl: float = 5.0):
        self._database = database
        self._sealer = sealer
        self._common_name = urlsplit(issuer).hostname or "bastion"
        self._cache_ttl = cache_ttl
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()
        self._loaded: dict[str, SamlKey] = {}
        self._current: SamlKey | None = None
        self._published: list[SamlKey] = []

    async def ensure_key(self) -> str | None:
        """Generate the signing key and certificate if there is none. Returns the new kid."""
        async with self._database.transaction() as session:
            published = await signing_keys.list_published_keys(session, algs=(SAML_ALG,))
            if any(k.status == "current" for k in published):
                return None
            kid = await self._insert(session)
        self._loaded_at = -1e9
        return kid

    async def rotate(self) -> str:
        """A new key and certificate; the old certificate stays in the metadata as previous."""
        async with self._database.transaction() as session:
            await signing_keys.demote_keys(session, alg=SAML_ALG)
            kid = await self._insert(session)
        self._loaded_at = -1e9
        return kid

    async def _insert(self, session) -> str:
        kid = new_id(length=24)
        private_key = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        await signing_keys.insert_signing_key(
            session, kid=kid, alg=SAML_ALG, private_key_sealed=self._sealer.seal(pem, purpose=_PURPOSE),
            public_jwk={"certificate": self_signed_certificate(private_key, self._common_name)},
        )
        return kid

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._cache_ttl:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._cache_ttl:
                return
            async with self._database.reader() as session:
                published = await signing_keys.list_published_keys(session, algs=(SAML_ALG,))
            loaded: dict[str, SamlKey] = {}
            current = None
            for row in published:
                key = self._loaded.get(row.kid)
                if key is None:
                    private_key = serialization.load_pem_private_key(self._sealer.open(row.private_key_sealed, purpose=_PURPOSE), password=None)
                    assert isinstance(private_key, rsa.RSAPrivateKey)
                    key = SamlKey(kid=row.kid, private_key=private_key, certificate_pem=row.public_jwk["certificate"])
                loaded[row.kid] = key
                if row.status == "current" and current is None:
                    current = key
            self._loaded, self._current, self._published = loaded, current, list(loaded.values())
            self._loaded_at = time.monotonic()

    async def current(self) -> SamlKey:
        await self._refresh()
        if self._current is None:
            raise RuntimeError("no SAML signing key: run `bastion migrate` or `bastion keys rotate --saml`")
        return self._current

    async def published(self) -> list[SamlKey]:
        """The certificates service providers should trust: current first, then previous."""
        await self._refresh()
        return list(self._published)


def certificate_fingerprint(certificate_pem: str) -> str:
    der = base64.b64decode("".join(line for line in certificate_pem.strip().splitlines() if "-----" not in line))
    return hashlib.sha256(der).hexdigest()
