"""Bastion as the relying party of an upstream OpenID Connect provider (OIDC Core 1.0, code flow).

    discover            the provider's metadata (Discovery 1.0 §4), cached per process
    authorization_url   §3.1.2.1: response_type=code, PKCE S256 (RFC 7636), state, nonce
    exchange_code       §3.1.3.1: the token endpoint, client_secret_basic or _post as the provider says
    verify_id_token     §3.1.3.7: signature (the provider's JWKS), iss, aud/azp, exp, iat, nonce
    fetch_userinfo      §5.3: the UserInfo endpoint, whose `sub` must be the ID token's (§5.3.2)

Independent of the web framework and of connections: login/federation.py turns a connection's
options into a `RelyingParty` and the claims into a user. Everything that goes wrong on the
provider's side (unreachable, an error answer, a token that does not verify) is an
`UpstreamError`, whose message is for the log and the tenant's administrators; the person
and the application only learn that the upstream login failed.

The HTTP client is one `httpx.AsyncClient` per process, with a timeout on every call; tests
pass a transport (`httpx.MockTransport`, `httpx.ASGITransport`) instead of the network.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from bastion.keys.jose import UPSTREAM_ALGORITHMS, JoseError, verify_upstream_jwt

__all__ = [
    "UpstreamError",
    "ProviderMetadata",
    "RelyingParty",
    "UpstreamTokens",
    "UpstreamProviders",
    "new_pkce_pair",
    "check_id_token_claims",
    "UPSTREAM_TIMEOUT",
]

UPSTREAM_TIMEOUT = 10.0  # seconds, per HTTP call to a provider
METADATA_TTL = 3600.0  # discovery documents and JWKS are re-read after an hour
JWKS_REFRESH_INTERVAL = 60.0  # an unknown `kid` re-reads the JWKS, at most once a minute
CLOCK_LEEWAY = 60  # seconds of clock skew tolerated on exp and iat
MAX_DOCUMENT_BYTES = 512 * 1024


class UpstreamError(Exception):
    """The upstream provider could not be used or its answer could not be trusted."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What Bastion needs from a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",)  # the spec's default
    id_token_algorithms: tuple[str, ...] = ("RS256",)  # the spec's default


@dataclass(frozen=True)
class RelyingParty:
    """Bastion's registration at the provider."""

    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass(frozen=True)
class UpstreamTokens:
    id_token: str
    access_token: str | None
    token_type: str | None = None
    expires_in: int | None = None


@dataclass
class _Cached:
    value: Any
    expires: float


def new_pkce_pair() -> tuple[str, str]:
    """RFC 7636 §4.1-4.2: a 256-bit verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("https", "http") and bool(parts.hostname)


class UpstreamProviders:
    """The upstream providers this process talks to: one HTTP client, and their metadata and
    keys cached for METADATA_TTL seconds (a process restart or the TTL picks up changes)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, timeout: float = UPSTREAM_TIMEOUT):
        self._transport = transport
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._metadata: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}
        self._forced: dict[str, float] = {}  # when each JWKS was last read again for an unknown key

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._transport, timeout=self._timeout, follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "Bastion"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def forget(self) -> None:
        """Drop the cached metadata and keys (a connection changed its discovery URL)."""
        self._metadata.clear()
        self._jwks.clear()
        self._forced.clear()

    async def _get_json(self, url: str, *, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self.http.get(url, headers=headers)
        except httpx.HTTPError as error:
            raise UpstreamError(f"{what} at {url} could not be fetched: {error!r}") from None
        return _json_object(response, what=what, url=url)

    # -- Discovery 1.0 §4 --------------------------------------------------------------

    async def discover(self, discovery_url: str, *, expected_issuer: str | None = None) -> ProviderMetadata:
        """The provider's metadata. Discovery 1.0 §4.3: its `issuer` must be the one configured,
        when the connection names one."""
        cached = self._metadata.get(discovery_url)
        if cached is not None and cached.expires > time.monotonic():
            metadata = cached.value
        else:
            if not _is_http_url(discovery_url):
                raise UpstreamError(f"the discovery URL {discovery_url!r} is not an http(s) URL")
            document = await self._get_json(discovery_url, what="the discovery document")
            metadata = _metadata_from(document)
            self._metadata[discovery_url] = _Cached(metadata, time.monotonic() + METADATA_TTL)
        if expected_issuer and _normalize_issuer(expected_issuer) != _normalize_issuer(metadata.issuer):
            raise UpstreamError(f"the discovery document names issuer {metadata.issuer!r}, not {expected_issuer!r}")
        return metadata

    # -- OIDC Core §3.1.2.1 -------------------------------------------------------------

    @staticmethod
    def authorization_url(
        metadata: ProviderMetadata, party: RelyingParty, *, scope: str, state: str, nonce: str, code_challenge: str,
        extra: dict[str, str] | None = None,
    ) -> str:
        """§3.1.2.1: the authentication request. `extra` (the connection's upstream_params) never
        replaces the parameters that protect the flow."""
        params = {k: v for k, v in (extra or {}).items() if k not in _PROTECTED_PARAMETERS}
        params.update(
            response_type="code", client_id=party.client_id, redirect_uri=party.redirect_uri, scope=scope,
            state=state, nonce=nonce, code_challenge=code_challenge, code_challenge_method="S256",
        )
        parts = urlsplit(metadata.authorization_endpoint)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit(parts._replace(query=query))

    # -- OIDC Core §3.1.3.1 -------------------------------------------------------------

    async def exchange_code(self, metadata: ProviderMetadata, party: RelyingParty, *, code: str, code_verifier: str) -> UpstreamTokens:
        """§3.1.3.1: the code (and PKCE verifier) for tokens, authenticating as the provider asks:
        client_secret_basic unless it supports only client_secret_post (RFC 6749 §2.3.1)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": party.redirect_uri, "code_verifier": code_verifier}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if "client_secret_basic" in metadata.token_endpoint_auth_methods or "client_secret_post" not in metadata.token_endpoint_auth_methods:
            # RFC 6749 §2.3.1: both parts form-encoded before Base64.
            pair = f"{quote(party.client_id, safe='')}:{quote(party.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=party.client_id, client_secret=party.client_secret)
        try:
            response = await self.http.post(metadata.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as error:
            raise UpstreamError(f"the token endpoint {metadata.token_endpoint} could not be reached: {error!r}") from None
        body = _json_object(response, what="the token response", url=metadata.token_endpoint, accept_errors=True)
        if response.status_code != 200:
            raise UpstreamError(
                f"the token endpoint answered {response.status_code}: {body.get('error')!r} {body.get('error_description')!r}"
            )
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise UpstreamError("the token response has no id_token (is `openid` in the connection's scope?)")
        access_token = body.get("access_token") if isinstance(body.get("access_token"), str) else None
        expires_in = body.get("expires_in") if isinstance(body.get("expires_in"), int) else None
        return UpstreamTokens(id_token=id_token, access_token=access_token, token_type=body.get("token_type"), expires_in=expires_in)

    # -- OIDC Core §3.1.3.7 -------------------------------------------------------------

    async def verify_id_token(
        self, metadata: ProviderMetadata, party: RelyingParty, id_token: str, *, nonce: str, now: float | None = None,
    ) -> dict[str, Any]:
        """§3.1.3.7: the ID token's claims, once its signature and claims are right."""
        algorithms = [a for a in metadata.id_token_algorithms if a in UPSTREAM_ALGORITHMS]
        if not algorithms:
            raise UpstreamError(f"the provider signs ID tokens with {list(metadata.id_token_algorithms)}, none of which Bastion accepts")
        jwks = await self._keys(metadata.jwks_uri)
        try:
            _header, claims = verify_upstream_jwt(id_token, jwks, algorithms=algorithms)
        except (JoseError, ValueError) as first_error:
            # The provider may have rotated its keys since we read them: read them again (rate-limited).
            refreshed = await self._keys(metadata.jwks_uri, refresh=True)
            if refreshed is jwks:
                raise UpstreamError(f"the ID token's signature does not verify: {first_error!r}") from None
            try:
                _header, claims = verify_upstream_jwt(id_token, refreshed, algorithms=algorithms)
            except (JoseError, ValueError) as error:
                raise UpstreamError(f"the ID token's signature does not verify: {error!r}") from None
        check_id_token_claims(claims, metadata=metadata, client_id=party.client_id, nonce=nonce, now=now)
        return claims

    async def _keys(self, jwks_uri: str, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's JWKS. `refresh` (a token no cached key verifies) reads it again, but at most
        once per JWKS_REFRESH_INTERVAL: tokens with made-up key ids cannot make Bastion hammer the provider."""
        now = time.monotonic()
        cached = self._jwks.get(jwks_uri)
        if cached is not None:
            if not refresh and cached.expires > now:
                return cached.value
            if refresh and now - self._forced.get(jwks_uri, -JWKS_REFRESH_INTERVAL) < JWKS_REFRESH_INTERVAL:
                return cached.value
        if refresh:
            self._forced[jwks_uri] = now
        jwks = await self._get_json(jwks_uri, what="the JWKS")
        if not isinstance(jwks.get("keys"), list):
            raise UpstreamError(f"the JWKS at {jwks_uri} has no `keys` list")
        self._jwks[jwks_uri] = _Cached(jwks, now + METADATA_TTL)
        return jwks

    # -- OIDC Core §5.3 -----------------------------------------------------------------

    async def fetch_userinfo(self, metadata: ProviderMetadata, access_token: str, *, subject: str) -> dict[str, Any]:
        """§5.3: the UserInfo claims; §5.3.2: their `sub` must be the ID token's, or they are someone else's."""
        if not metadata.userinfo_endpoint:
            return {}
        claims = await self._get_json(
            metadata.userinfo_endpoint, what="the UserInfo response", headers={"Authorization": f"Bearer {access_token}"},
        )
        if claims.get("sub") != subject:
            raise UpstreamError("the UserInfo response is about another subject than the ID token")
        return claims


# Parameters a connection's upstream_params may not set: they carry the flow's protections.
_PROTECTED_PARAMETERS = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
     "response_mode", "request", "request_uri"}
)


def check_id_token_claims(
    claims: dict[str, Any], *, metadata: ProviderMetadata, client_id: str, nonce: str, now: float | None = None
) -> None:
    """OIDC Core §3.1.3.7 steps 2-3, 9-11, and §2's required claims. Raises UpstreamError."""
    now = time.time() if now is None else now
    issuer = metadata.issuer
    if "{tenantid}" in issuer and isinstance(claims.get("tid"), str):
        # Azure AD's multi-tenant ("common"/"organizations") metadata names a template issuer.
        issuer = issuer.replace("{tenantid}", claims["tid"])
    if claims.get("iss") != issuer:
        raise UpstreamError(f"the ID token's iss {claims.get('iss')!r} is not the provider's issuer {issuer!r}")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if client_id not in audiences:
        raise UpstreamError("the ID token is not for this client (aud)")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise UpstreamError("the ID token has several audiences and its azp is not this client")
    if "azp" in claims and claims.get("azp") != client_id:
        raise UpstreamError("the ID token's azp is another client")
    expires = claims.get("exp")
    if not isinstance(expires, (int, float)) or expires + CLOCK_LEEWAY < now:
        raise UpstreamError("the ID token has expired")
    issued = claims.get("iat")
    if not isinstance(issued, (int, float)) or issued - CLOCK_LEEWAY > now:
        raise UpstreamError("the ID token's iat is missing or in the future")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"].encode(), nonce.encode()):
        raise UpstreamError("the ID token's nonce is not the one this login sent")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise UpstreamError("the ID token has no usable sub")


def _normalize_issuer(issuer: str) -> str:
    return issuer.rstrip("/")


def _json_object(response: httpx.Response, *, what: str, url: str, accept_errors: bool = False) -> dict[str, Any]:
    if response.status_code != 200 and not accept_errors:
        raise UpstreamError(f"{what} at {url} answered HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise UpstreamError(f"{what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        body = response.json()
    except ValueError:
        if accept_errors and response.status_code != 200:
            return {}
        raise UpstreamError(f"{what} at {url} is not JSON") from None
    if not isinstance(body, dict):
        raise UpstreamError(f"{what} at {url} is not a JSON object")
    return body


def _metadata_from(document: dict[str, Any]) -> ProviderMetadata:
    """Discovery 1.0 §3: the fields the code flow needs, checked to be URLs."""
    missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri") if not isinstance(document.get(k), str)]
    if missing:
        raise UpstreamError(f"the discovery document lacks {', '.join(missing)}")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not _is_http_url(document[key]):
            raise UpstreamError(f"the discovery document's {key} is not an http(s) URL")
    userinfo = document.get("userinfo_endpoint")
    methods = document.get("token_endpoint_auth_methods_supported")
    algorithms = document.get("id_token_signing_alg_values_supported")
    return ProviderMetadata(
        issuer=document["issuer"],
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        userinfo_endpoint=userinfo if _is_http_url(userinfo) else None,
        token_endpoint_auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) and methods else ("client_secret_basic",),
        id_token_algorithms=tuple(a for a in algorithms if isinstance(a, str)) if isinstance(algorithms, list) and algorithms else ("RS256",),
    )
