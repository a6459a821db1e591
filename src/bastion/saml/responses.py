"""Writing what Bastion sends: the signed Response with its Assertion, error Responses,
LogoutRequest and LogoutResponse.

Signatures are enveloped, exclusive-c14n, RSA-SHA256 by default (signxml), placed right
after the signed element's Issuer as the SAML schema orders it. By default only the
Assertion is signed; `sign_response` signs the Response instead (Auth0's `signResponse`).
Error Responses and logout messages are always signed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from lxml import etree
from signxml import XMLSigner, methods

from bastion.saml.attributes import assertion_attributes, name_identifier
from bastion.saml.keys import SamlKey
from bastion.saml.requests import DSIG, SAML, SAMLP

__all__ = [
    "SUCCESS",
    "REQUESTER",
    "RESPONDER",
    "REQUEST_DENIED",
    "NO_PASSIVE",
    "AUTHN_FAILED",
    "Subject",
    "login_response",
    "error_response",
    "logout_request",
    "logout_response",
    "serialize",
]

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
NAME_FORMAT_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
NAME_FORMAT_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"

_PROTOCOL_NS = {"samlp": SAMLP, "saml": SAML}
_ASSERTION_NS = {"saml": SAML, "xs": XS, "xsi": XSI}


@dataclass(frozen=True)
class Subject:
    """Who the assertion is about, and the login it comes from."""

    user: dict[str, Any]  # the rules' final user
    session_index: str
    auth_instant: datetime


def _id() -> str:
    return "_" + secrets.token_hex(20)


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sub(parent: etree._Element, namespace: str, name: str, text: str | None = None, **attributes: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{namespace}}}{name}", {k: v for k, v in attributes.items() if v is not None})
    if text is not None:
        element.text = text
    return element


def _placeholder(parent: etree._Element) -> None:
    """Where signxml puts the signature: right after Issuer."""
    etree.SubElement(parent, f"{{{DSIG}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DSIG})


def _sign(element: etree._Element, key: SamlKey, config: dict[str, Any]) -> etree._Element:
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=config.get("signature_algorithm") or "rsa-sha256",
        digest_algorithm=config.get("digest_algorithm") or "sha256",
        c14n_algorithm=EXC_C14N,
    )
    return signer.sign(element, key=key.private_key, cert=[key.certificate_pem])


def _typed(value: Any) -> tuple[str, str]:
    if isinstance(value, bool):
        return "xs:boolean", "true" if value else "false"
    if isinstance(value, (int, float)):
        return "xs:double", str(value)
    if isinstance(value, str):
        return "xs:string", value
    return "xs:anyType", str(value)


def _name_format(name: str) -> str:
    scheme, colon, _ = name.partition(":")
    if colon and scheme.isalpha():
        return NAME_FORMAT_URI
    if name.replace("_", "a").replace("-", "a").replace(".", "a").isalnum() and not name[0].isdigit():
        return NAME_FORMAT_BASIC
    return NAME_FORMAT_UNSPECIFIED


def _assertion(
    *, issuer: str, subject: Subject, config: dict[str, Any], in_response_to: str | None, now: datetime
) -> etree._Element:
    attributes = assertion_attributes(subject.user, config)
    until = _instant(now + timedelta(seconds=int(config.get("lifetime_in_seconds") or 3600)))
    assertion = etree.Element(f"{{{SAML}}}Assertion", {"ID": _id(), "Version": "2.0", "IssueInstant": _instant(now)}, nsmap=_ASSERTION_NS)
    _sub(assertion, SAML, "Issuer", issuer)
    if not config.get("sign_response"):
        _placeholder(assertion)
    subject_element = _sub(assertion, SAML, "Subject")
    _sub(subject_element, SAML, "NameID", name_identifier(subject.user, attributes, config), Format=config.get("name_identifier_format"))
    confirmation = _sub(subject_element, SAML, "SubjectConfirmation", Method=BEARER)
    _sub(confirmation, SAML, "SubjectConfirmationData", NotOnOrAfter=until, Recipient=config.get("recipient"), InResponseTo=in_response_to)
    conditions = _sub(assertion, SAML, "Conditions", NotBefore=_instant(now), NotOnOrAfter=until)
    _sub(_sub(conditions, SAML, "AudienceRestriction"), SAML, "Audience", config.get("audience") or "")
    statement = _sub(assertion, SAML, "AuthnStatement", AuthnInstant=_instant(subject.auth_instant), SessionIndex=subject.session_index)
    _sub(_sub(statement, SAML, "AuthnContext"), SAML, "AuthnContextClassRef", config.get("authn_context_class_ref"))
    if attributes:
        attribute_statement = _sub(assertion, SAML, "AttributeStatement")
        for attribute_name, values in attributes:
            name_format = _name_format(attribute_name) if config.get("include_attribute_name_format", True) else None
            attribute = _sub(attribute_statement, SAML, "Attribute", Name=attribute_name, NameFormat=name_format)
            for value in values:
                if config.get("typed_attributes", True):
                    xsi_type, text = _typed(value)
                    _sub(attribute, SAML, "AttributeValue", text, **{f"{{{XSI}}}type": xsi_type})
                else:
                    _sub(attribute, SAML, "AttributeValue", value if isinstance(value, str) else _typed(value)[1])
    return assertion


def _response(*, issuer: str, destination: str | None, in_response_to: str | None, now: datetime, signed: bool) -> etree._Element:
    response = etree.Element(
        f"{{{SAMLP}}}Response",
        {k: v for k, v in {"ID": _id(), "Version": "2.0", "IssueInstant": _instant(now), "Destination": destination,
                           "InResponseTo": in_response_to}.items() if v is not None},
        nsmap=_PROTOCOL_NS,
    )
    _sub(response, SAML, "Issuer", issuer)
    if signed:
        _placeholder(response)
    return response


def login_response(
    *, issuer: str, subject: Subject, config: dict[str, Any], in_response_to: str | None, key: SamlKey
) -> etree._Element:
    """A Success Response carrying one signed assertion about `subject`, shaped by `config`."""
    now = datetime.now(timezone.utc)
    assertion = _assertion(issuer=issuer, subject=subject, config=config, in_response_to=in_response_to, now=now)
    if not config.get("sign_response"):
        assertion = _sign(assertion, key, config)
    response = _response(
        issuer=issuer, destination=config.get("destination"), in_response_to=in_response_to, now=now,
        signed=bool(config.get("sign_response")),
    )
    status = _sub(response, SAMLP, "Status")
    _sub(status, SAMLP, "StatusCode", Value=SUCCESS)
    response.append(assertion)
    return _sign(response, key, config) if config.get("sign_response") else response


def error_response(
    *, issuer: str, destination: str | None, in_response_to: str | None, status: str, sub_status: str | None,
    message: str | None, key: SamlKey, config: dict[str, Any],
) -> etree._Element:
    """A signed Response without an assertion (a rule denied the login, a passive request failed...)."""
    response = _response(issuer=issuer, destination=destination, in_response_to=in_response_to, now=datetime.now(timezone.utc), signed=True)
    status_element = _sub(response, SAMLP, "Status")
    code = _sub(status_element, SAMLP, "StatusCode", Value=status)
    if sub_status:
        _sub(code, SAMLP, "StatusCode", Value=sub_status)
    if message:
        _sub(status_element, SAMLP, "StatusMessage", message)
    return _sign(response, key, config)


def logout_response(
    *, issuer: str, destination: str | None, in_response_to: str, status: str, key: SamlKey, config: dict[str, Any]
) -> etree._Element:
    now = datetime.now(timezone.utc)
    response = etree.Element(
        f"{{{SAMLP}}}LogoutResponse",
        {k: v for k, v in {"ID": _id(), "Version": "2.0", "IssueInstant": _instant(now), "Destination": destination,
                           "InResponseTo": in_response_to}.items() if v is not None},
        nsmap=_PROTOCOL_NS,
    )
    _sub(response, SAML, "Issuer", issuer)
    _placeholder(response)
    _sub(_sub(response, SAMLP, "Status"), SAMLP, "StatusCode", Value=status)
    return _sign(response, key, config)


def logout_request(
    *, issuer: str, destination: str, name_id: str, name_id_format: str | None, session_index: str | None,
    key: SamlKey, config: dict[str, Any],
) -> etree._Element:
    """IdP-initiated single logout: tells a service provider the session has ended."""
    now = datetime.now(timezone.utc)
    request = etree.Element(
        f"{{{SAMLP}}}LogoutRequest",
        {"ID": _id(), "Version": "2.0", "IssueInstant": _instant(now), "Destination": destination},
        nsmap=_PROTOCOL_NS,
    )
    _sub(request, SAML, "Issuer", issuer)
    _placeholder(request)
    _sub(request, SAML, "NameID", name_id, Format=name_id_format)
    if session_index:
        _sub(request, SAMLP, "SessionIndex", session_index)
    return _sign(request, key, config)


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=False, encoding="UTF-8")
