"""Reading what a service provider sends: AuthnRequest, LogoutRequest and LogoutResponse,
by the HTTP-Redirect (deflated, query-signed) or HTTP-POST (base64, XML-signed) binding.

Every message is parsed first by defusedxml with DTDs, entities and external references
forbidden (XXE and billion-laughs inputs are refused before anything reads them), then
its fields are read into a small frozen dataclass. A signature, when the application has
a certificate (`addons.samlp.signingCert`), is required and checked: over the query
string for HTTP-Redirect (SAML Bindings §3.4.4.1), with signxml for HTTP-POST, where the
fields are read only from the element the signature covers, which must be the message
itself (so a wrapped, re-rooted message is refused).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote_plus
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from defusedxml import DefusedXmlException
from signxml import InvalidSignature as InvalidXmlSignature
from signxml import SignatureConfiguration, XMLVerifier
from signxml.exceptions import InvalidInput

from bastion.saml.keys import load_certificate

__all__ = [
    "SAMLP",
    "SAML",
    "SamlRequestError",
    "AuthnRequest",
    "LogoutMessage",
    "decode_message",
    "read_authn_request",
    "read_logout_message",
    "check_redirect_signature",
    "check_post_signature",
    "check_issue_instant",
]

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
MAX_MESSAGE_BYTES = 64 * 1024
_NCNAME = re.compile(r"[A-Za-z_][\w.\-]{0,255}")

# SHA-1 is refused (a SHA-1 signature can be forged), for requests as for responses.
REDIRECT_SIGNATURE_ALGORITHMS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512,
}


class SamlRequestError(ValueError):
    """A message Bastion will not act on; the text says why, for the error page."""


@dataclass(frozen=True)
class AuthnRequest:
    id: str
    issuer: str | None
    issue_instant: datetime
    destination: str | None
    acs_url: str | None
    protocol_binding: str | None
    force_authn: bool
    is_passive: bool
    name_id_format: str | None
    signed: bool = False


@dataclass(frozen=True)
class LogoutMessage:
    """A LogoutRequest (name_id, session_index) or a LogoutResponse (in_response_to, status)."""

    kind: str  # "LogoutRequest" | "LogoutResponse"
    id: str
    issuer: str | None
    issue_instant: datetime
    destination: str | None
    name_id: str | None = None
    session_indexes: tuple[str, ...] = ()
    in_response_to: str | None = None
    status: str | None = None


def decode_message(value: str | None, *, deflated: bool) -> bytes:
    """The XML of a SAMLRequest/SAMLResponse parameter: base64, inflated for HTTP-Redirect."""
    if not value:
        raise SamlRequestError("The request carries no SAML message.")
    if len(value) > MAX_MESSAGE_BYTES * 2:
        raise SamlRequestError("The SAML message is too large.")
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("The SAML message is not valid base64.") from None
    if not deflated:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise SamlRequestError("The SAML message is too large.")
        return raw
    inflater = zlib.decompressobj(-15)
    try:
        xml = inflater.decompress(raw, MAX_MESSAGE_BYTES)
    except zlib.error:
        raise SamlRequestError("The SAML message is not DEFLATE-encoded, as the HTTP-Redirect binding requires.") from None
    if inflater.unconsumed_tail:
        raise SamlRequestError("The SAML message is too large.")
    return xml


def _parse(xml: bytes) -> Element:
    """defusedxml, with every DTD refused: SAML messages never need one."""
    try:
        return SafeET.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as problem:
        raise SamlRequestError(f"The SAML message was refused: it contains a DTD or entity declaration ({type(problem).__name__}).") from None
    except ParseError as problem:
        raise SamlRequestError(f"The SAML message is not well-formed XML ({problem}).") from None


def _instant(value: str | None, name: str) -> datetime:
    if not value:
        raise SamlRequestError(f"The SAML message has no {name}.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SamlRequestError(f"The SAML message's {name} is not a date-time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _common(root: Any, expected: tuple[str, ...]) -> dict[str, Any]:
    local = root.tag.rsplit("}", 1)[-1] if isinstance(root.tag, str) else ""
    if not root.tag.startswith(f"{{{SAMLP}}}") or local not in expected:
        raise SamlRequestError(f"Expected a SAML {' or '.join(expected)}, not {local or 'something else'}.")
    if root.get("Version") != "2.0":
        raise SamlRequestError("Only SAML 2.0 messages are accepted.")
    message_id = root.get("ID")
    if not message_id or not _NCNAME.fullmatch(message_id):
        raise SamlRequestError("The SAML message has no valid ID.")
    issuer = root.find(f"{{{SAML}}}Issuer")
    return {
        "id": message_id,
        "issuer": (issuer.text or "").strip() or None if issuer is not None else None,
        "issue_instant": _instant(root.get("IssueInstant"), "IssueInstant"),
        "destination": root.get("Destination"),
    }


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def read_authn_request(xml: bytes, *, root: Any = None) -> AuthnRequest:
    """The fields of an AuthnRequest (`root`: the signed element, when a signature was checked)."""
    document = root if root is not None else _parse(xml)
    common = _common(document, ("AuthnRequest",))
    policy = document.find(f"{{{SAMLP}}}NameIDPolicy")
    return AuthnRequest(
        **common,
        acs_url=document.get("AssertionConsumerServiceURL"),
        protocol_binding=document.get("ProtocolBinding"),
        force_authn=_flag(document.get("ForceAuthn")),
        is_passive=_flag(document.get("IsPassive")),
        name_id_format=policy.get("Format") if policy is not None else None,
        signed=root is not None,
    )


def read_logout_message(xml: bytes, *, root: Any = None) -> LogoutMessage:
    document = root if root is not None else _parse(xml)
    common = _common(document, ("LogoutRequest", "LogoutResponse"))
    kind = document.tag.rsplit("}", 1)[-1]
    if kind == "LogoutRequest":
        name_id = document.find(f"{{{SAML}}}NameID")
        return LogoutMessage(
            kind=kind, **common,
            name_id=(name_id.text or "").strip() if name_id is not None else None,
            session_indexes=tuple((e.text or "").strip() for e in document.findall(f"{{{SAMLP}}}SessionIndex")),
        )
    status = document.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    return LogoutMessage(
        kind=kind, **common, in_response_to=document.get("InResponseTo"),
        status=status.get("Value") if status is not None else None,
    )


def check_issue_instant(moment: datetime, *, skew: int, max_age: int) -> None:
    """Refuse a message from the future (beyond the allowed clock skew) or older than `max_age`."""
    now = datetime.now(timezone.utc)
    if moment > now + timedelta(seconds=skew):
        raise SamlRequestError("The SAML message was issued in the future: check the service provider's clock.")
    if moment < now - timedelta(seconds=max_age + skew):
        raise SamlRequestError("The SAML message is too old. Start again from the application.")


def _certificate(pem: str) -> x509.Certificate:
    try:
        return load_certificate(pem)
    except ValueError:
        raise SamlRequestError("The application's signing certificate (addons.samlp.signingCert) is not a valid PEM certificate.") from None


def check_redirect_signature(raw_query: str, certificate_pem: str, *, message_parameter: str = "SAMLRequest") -> None:
    """SAML Bindings §3.4.4.1: the signature over `SAMLRequest=..&RelayState=..&SigAlg=..`, as sent."""
    raw: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        # Names as the parameters are read (`Relay%53tate` is RelayState): each one read must be signed.
        name = unquote_plus(name)
        if name in raw:
            raise SamlRequestError(f"The request repeats the {name} parameter.")
        raw[name] = value
    if "Signature" not in raw or "SigAlg" not in raw:
        raise SamlRequestError("This application requires signed requests, and this one is not signed.")
    algorithm = REDIRECT_SIGNATURE_ALGORITHMS.get(unquote_plus(raw["SigAlg"]))
    if algorithm is None:
        raise SamlRequestError(f"The signature algorithm {unquote_plus(raw['SigAlg'])} is not accepted (use RSA-SHA256).")
    signed = "&".join(f"{name}={raw[name]}" for name in (message_parameter, "RelayState", "SigAlg") if name in raw)
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("The request's signature is not valid base64.") from None
    public_key = _certificate(certificate_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SamlRequestError("The application's signing certificate must hold an RSA key.")
    try:
        public_key.verify(signature, signed.encode(), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SamlRequestError("The request's signature does not verify with the application's certificate.") from None


def check_post_signature(xml: bytes, certificate_pem: str) -> Any:
    """Verify an enveloped XML signature; returns the signed element, which must be the message itself."""
    root = _parse(xml)  # refuses DTDs and entities before signxml sees the bytes
    if root.find(f"{{{DSIG}}}Signature") is None:
        raise SamlRequestError("This application requires signed requests, and this one is not signed.")
    try:
        result = XMLVerifier().verify(
            xml, x509_cert=_certificate(certificate_pem), expect_config=SignatureConfiguration(location="./", expect_references=1),
        )
    except (InvalidXmlSignature, InvalidInput) as problem:
        raise SamlRequestError(f"The request's signature does not verify with the application's certificate ({problem}).") from None
    signed = result.signed_xml
    identifiers = [e.get("ID") for e in root.iter() if e.get("ID") is not None]
    if signed is None or signed.get("ID") != root.get("ID") or signed.tag != root.tag or identifiers.count(root.get("ID")) != 1:
        raise SamlRequestError("The request's signature does not cover the request itself.")
    return signed
