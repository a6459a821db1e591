"""The only module that imports the JOSE library (joserfc).

Everything else signs and verifies through these functions, with an explicit
algorithm allow-list on every verification.
"""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JoseError",
    "SigningKeyMaterial",
    "generate_private_key",
    "load_private_key",
    "verify_jwt",
    "public_keyset",
    "UPSTREAM_ALGORITHMS",
    "verify_upstream_jwt",
    "sign_hs256",
    "verify_hs256",
]

ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")

# RFC 9864 names Ed25519 explicitly; "EdDSA" is what relying parties understand today.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=Warning)

_REGISTRY = JWSRegistry(algorithms=list(ASYMMETRIC_ALGORITHMS) + ["HS256"])
with warnings.catch_warnings():  # looked up once: joserfc warns about the name "EdDSA" on every lookup
    warnings.simplefilter("ignore")
    _SIGNING_ALGORITHMS = {name: _REGISTRY.get_alg(name) for name in ASYMMETRIC_ALGORITHMS}


class SigningKeyMaterial:
    """A loaded private key, ready to sign; loaded once and cached by the keyring.

    Tokens are signed on every login and every token request, so the fixed parts are prepared
    once: the key is checked against its algorithm here, and the protected header's encoded
    segment is kept per `typ`. joserfc's algorithm object computes the signature (and its JOSE
    encoding, e.g. ECDSA's r||s); what is left per token is JSON and base64url.
    """

    def __init__(self, kid: str, alg: str, key: Any):
        self.kid = kid
        self.alg = alg
        self._key = key
        self._algorithm = _SIGNING_ALGORITHMS[alg]
        self._algorithm.check_key(key)
        self._header_segments: dict[str, bytes] = {}

    def _header_segment(self, typ: str) -> bytes:
        segment = self._header_segments.get(typ)
        if segment is None:
            segment = self._header_segments[typ] = _b64_json({"alg": self.alg, "typ": typ, "kid": self.kid})
        return segment

    def sign(self, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        signing_input = self._header_segment(typ) + b"." + _b64_json(claims)
        signature = self._algorithm.sign(signing_input, self._key)
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii")


def _b64_json(value: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()).rstrip(b"=")


def generate_private_key(alg: str, kid: str) -> tuple[str, dict]:
    """A new key for `alg`: (private PEM, public JWK with kid, alg and use)."""
    parameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=parameters)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=parameters)
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", parameters=parameters)
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    return key.as_pem(private=True).decode(), key.as_dict(private=False)


def load_private_key(alg: str, kid: str, pem: bytes) -> SigningKeyMaterial:
    kind = {"RS256": RSAKey, "ES256": ECKey, "EdDSA": OKPKey}[alg]
    return SigningKeyMaterial(kid, alg, kind.import_key(pem, parameters={"kid": kid, "alg": alg, "use": "sig"}))


def public_keyset(jwks: list[dict]) -> KeySet:
    return KeySet.import_key_set({"keys": jwks})


def verify_jwt(token: str, keyset: KeySet, *, algorithms: list[str] | tuple[str, ...] = ASYMMETRIC_ALGORITHMS) -> tuple[dict, dict]:
    """Check the signature (and only that): returns (header, claims). Raises JoseError or ValueError."""
    registry = JWSRegistry(algorithms=list(algorithms))
    decoded = jwt.decode(token, keyset, registry=registry)
    return dict(decoded.header), dict(decoded.claims)


# What an upstream identity provider may sign its ID tokens with (login/upstream.py): the
# asymmetric algorithms of RFC 7518 and EdDSA. Never `none`, never HS256 (a token MACed with
# the client secret would let anyone holding the secret mint identities).
UPSTREAM_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def verify_upstream_jwt(token: str, jwks: dict, *, algorithms: list[str] | tuple[str, ...]) -> tuple[dict, dict]:
    """An upstream provider's ID token: check the signature against its published JWKS, with
    `algorithms` (a subset of UPSTREAM_ALGORITHMS) allowed. Returns (header, claims); the claims
    are not checked here. Raises JoseError or ValueError (also for a JWKS that cannot be read).

    Keys the JWKS marks for encryption (`use: enc`) are skipped: only signing keys may verify."""
    allowed = [a for a in algorithms if a in UPSTREAM_ALGORITHMS]
    if not allowed:
        raise ValueError("no acceptable signing algorithm")
    keys = [k for k in (jwks.get("keys") or []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    keyset = KeySet.import_key_set({"keys": keys})
    decoded = jwt.decode(token, keyset, registry=JWSRegistry(algorithms=allowed))
    return dict(decoded.header), dict(decoded.claims)


def sign_hs256(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, OctKey.import_key(secret.encode()), registry=_REGISTRY)


def verify_hs256(token: str, secret: str) -> dict:
    decoded = jwt.decode(token, OctKey.import_key(secret.encode()), registry=JWSRegistry(algorithms=["HS256"]))
    return dict(decoded.claims)
