"""Proves the SAML SP harness (tests/saml_sp.py) in isolation, without Bastion.

A tiny IdP is faked here: an RSA key with a self-signed certificate, metadata shaped
like Bastion's, and Responses built with lxml and signed with signxml the way Bastion
signs them (RSA-SHA256, exclusive c14n, enveloped signature right after the Issuer).
Both SP libraries must accept a good response and refuse tampered, misaddressed,
expired or unrequested ones.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml_sp import OneLoginSP, Pysaml2SP, SpRejected, inflate_redirect, post_form

IDP_ENTITY = "urn:127.0.0.1"
SSO_URL = "https://idp.test/samlp/client-1"
SP_ENTITY = "https://sp.test/metadata"
ACS_URL = "https://sp.test:8443/saml/acs"
EMAIL = "alice@example.com"
NS = {
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
GROUPS = "http://schemas.xmlsoap.org/claims/Group"


def _key_and_cert(common_name: str) -> tuple[rsa.RSAPrivateKey, str, str]:
    """An RSA key and a self-signed certificate for it: (key, key PEM, cert PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key, key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _el(parent, tag: str, text: str | None = None, **attrib) -> etree._Element:
    """A child element `prefix:name` (namespaces from NS) with optional text and attributes."""
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{NS[prefix]}}}{name}", attrib, nsmap={prefix: NS[prefix]})
    element.text = text
    return element


def _saml_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeIdp:
    """Just enough of an IdP: its metadata and signed Responses."""

    key_pem: str
    cert_pem: str

    def metadata(self) -> str:
        """IdP metadata shaped like Bastion's `/samlp/metadata/{client_id}`."""
        root = etree.Element(f"{{{NS['md']}}}EntityDescriptor", entityID=IDP_ENTITY, nsmap={"md": NS["md"]})
        idp = _el(root, "md:IDPSSODescriptor", protocolSupportEnumeration=NS["samlp"])
        x509_data = _el(_el(_el(idp, "md:KeyDescriptor", use="signing"), "ds:KeyInfo"), "ds:X509Data")
        _el(x509_data, "ds:X509Certificate", "".join(self.cert_pem.strip().splitlines()[1:-1]))
        for binding in ("HTTP-Redirect", "HTTP-POST"):
            _el(idp, "md:SingleLogoutService", Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}",
                Location=f"{SSO_URL}/logout")
        for fmt in ("1.1:nameid-format:emailAddress", "2.0:nameid-format:persistent"):
            _el(idp, "md:NameIDFormat", f"urn:oasis:names:tc:SAML:{fmt}")
        for binding in ("HTTP-Redirect", "HTTP-POST"):
            _el(idp, "md:SingleSignOnService", Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}",
                Location=SSO_URL)
        return etree.tostring(root, encoding="unicode")

    def _sign(self, element: etree._Element) -> etree._Element:
        """Enveloped RSA-SHA256 signature of `element`, moved right after its Issuer (schema order)."""
        signed = signxml.XMLSigner(
            method=signxml.methods.enveloped, signature_algorithm="rsa-sha256", digest_algorithm="sha256",
            c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
        ).sign(element, key=self.key_pem, cert=self.cert_pem, reference_uri="#" + element.get("ID"))
        signature = signed.find("ds:Signature", NS)
        signed.find("saml:Issuer", NS).addnext(signature)
        return signed

    def response(self, *, in_response_to: str | None = "_request-1", audience: str = SP_ENTITY,
                 lifetime: dt.timedelta = dt.timedelta(minutes=5), issued_ago: dt.timedelta = dt.timedelta(0),
                 sign_assertion: bool = True, sign_response: bool = False) -> str:
        """A base64 Response with one Assertion for alice, signed as asked."""
        issued = dt.datetime.now(dt.UTC) - issued_ago
        irt = {"InResponseTo": in_response_to} if in_response_to else {}
        response = etree.Element(f"{{{NS['samlp']}}}Response", nsmap={"samlp": NS["samlp"], "saml": NS["saml"]},
                                 ID="_" + uuid.uuid4().hex, Version="2.0", IssueInstant=_saml_time(issued),
                                 Destination=ACS_URL, **irt)
        _el(response, "saml:Issuer", IDP_ENTITY)
        _el(_el(response, "samlp:Status"), "samlp:StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")

        assertion = etree.Element(f"{{{NS['saml']}}}Assertion", nsmap={"saml": NS["saml"]},
                                  ID="_" + uuid.uuid4().hex, Version="2.0", IssueInstant=_saml_time(issued))
        _el(assertion, "saml:Issuer", IDP_ENTITY)
        subject = _el(assertion, "saml:Subject")
        _el(subject, "saml:NameID", EMAIL, Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
        confirmation = _el(subject, "saml:SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:bearer")
        _el(confirmation, "saml:SubjectConfirmationData", Recipient=ACS_URL,
            NotOnOrAfter=_saml_time(issued + lifetime), **irt)
        conditions = _el(assertion, "saml:Conditions", NotBefore=_saml_time(issued - dt.timedelta(seconds=30)),
                         NotOnOrAfter=_saml_time(issued + lifetime))
        _el(_el(conditions, "saml:AudienceRestriction"), "saml:Audience", audience)
        authn = _el(assertion, "saml:AuthnStatement", AuthnInstant=_saml_time(issued), SessionIndex="_session-1")
        _el(_el(authn, "saml:AuthnContext"), "saml:AuthnContextClassRef",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
        statement = _el(assertion, "saml:AttributeStatement")
        for name, values in (("email", [EMAIL]), (GROUPS, ["admins", "staff"])):
            attribute = _el(statement, "saml:Attribute", Name=name,
                            NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri")
            for value in values:
                element = etree.SubElement(attribute, f"{{{NS['saml']}}}AttributeValue",
                                           nsmap={"xs": NS["xs"], "xsi": NS["xsi"]})
                element.set(f"{{{NS['xsi']}}}type", "xs:string")
                element.text = value
        response.append(self._sign(assertion) if sign_assertion else assertion)
        if sign_response:
            response = self._sign(response)
        return base64.b64encode(etree.tostring(response)).decode()


@pytest.fixture(scope="module")
def idp() -> FakeIdp:
    _, key_pem, cert_pem = _key_and_cert("fake-idp")
    return FakeIdp(key_pem, cert_pem)


@pytest.fixture(scope="module")
def sp_keys() -> tuple[rsa.RSAPrivateKey, str, str]:
    return _key_and_cert("sp.test")


SPS = [Pysaml2SP, OneLoginSP]


def _sp(sp_class, idp: FakeIdp, **kwargs):
    return sp_class(idp_metadata=idp.metadata(), entity_id=SP_ENTITY, acs_url=ACS_URL, **kwargs)


def _tamper(response_b64: str, old: bytes, new: bytes) -> str:
    xml = base64.b64decode(response_b64)
    assert xml.count(old) == 1
    return base64.b64encode(xml.replace(old, new)).decode()


@pytest.mark.parametrize("sp_class", SPS)
def test_valid_response_is_accepted(sp_class, idp):
    login = _sp(sp_class, idp).accept(idp.response(), request_id="_request-1")
    assert login.name_id == EMAIL
    assert login.name_id_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert login.attributes == {"email": [EMAIL], GROUPS: ["admins", "staff"]}
    assert login.session_index == "_session-1"
    assert login.in_response_to == "_request-1"
    assert login.audience == [SP_ENTITY]


@pytest.mark.parametrize("sp_class", SPS)
def test_signed_response_only_is_accepted_when_the_sp_wants_it(sp_class, idp):
    sp = _sp(sp_class, idp, want_response_signed=True, want_assertions_signed=False)
    assert sp.accept(idp.response(sign_assertion=False, sign_response=True), request_id="_request-1").name_id == EMAIL
    with pytest.raises(SpRejected, match="(?i)signature missing for response|message of the response is not signed"):
        sp.accept(idp.response(), request_id="_request-1")  # only the assertion is signed


@pytest.mark.parametrize("sp_class", SPS)
def test_unsigned_response_is_rejected(sp_class, idp):
    with pytest.raises(SpRejected, match="(?i)signature missing for assertion|assertion of the response is not signed"):
        _sp(sp_class, idp).accept(idp.response(sign_assertion=False), request_id="_request-1")


@pytest.mark.parametrize("sp_class", SPS)
@pytest.mark.parametrize(("old", "new"), [(b">staff<", b">staf6<"), (b">alice@example.com</saml:NameID>",
                                                                     b">alicE@example.com</saml:NameID>")])
def test_one_changed_byte_is_rejected(sp_class, idp, old, new):
    with pytest.raises(SpRejected, match="(?i)signature"):
        _sp(sp_class, idp).accept(_tamper(idp.response(), old, new), request_id="_request-1")


@pytest.mark.parametrize("sp_class", SPS)
def test_wrong_audience_is_rejected(sp_class, idp):
    with pytest.raises(SpRejected, match="(?i)audience"):
        _sp(sp_class, idp).accept(idp.response(audience="https://other-sp.test"), request_id="_request-1")


@pytest.mark.parametrize("sp_class", SPS)
def test_expired_assertion_is_rejected(sp_class, idp):
    expired = idp.response(issued_ago=dt.timedelta(hours=2), lifetime=dt.timedelta(hours=1))
    with pytest.raises(SpRejected, match="(?i)too old|expired"):
        _sp(sp_class, idp).accept(expired, request_id="_request-1")


@pytest.mark.parametrize("sp_class", SPS)
def test_response_to_another_request_is_rejected(sp_class, idp):
    with pytest.raises(SpRejected, match="Unsolicited|InResponseTo"):
        _sp(sp_class, idp).accept(idp.response(in_response_to="_request-2"), request_id="_request-1")


@pytest.mark.parametrize("sp_class", SPS)
def test_response_for_another_acs_is_rejected(sp_class, idp):
    sp = sp_class(idp_metadata=idp.metadata(), entity_id=SP_ENTITY, acs_url="https://sp.test:8443/other/acs")
    with pytest.raises(SpRejected, match="(?i)destination|received at"):
        sp.accept(idp.response(), request_id="_request-1")


def test_idp_initiated_response_needs_allow_unsolicited_in_pysaml2(idp):
    with pytest.raises(SpRejected, match="Unsolicited"):
        _sp(Pysaml2SP, idp).accept(idp.response(in_response_to=None))
    assert _sp(Pysaml2SP, idp, allow_unsolicited=True).accept(idp.response(in_response_to=None)).name_id == EMAIL
    assert _sp(OneLoginSP, idp).accept(idp.response(in_response_to=None)).in_response_to is None


@pytest.mark.parametrize("sp_class", SPS)
def test_redirect_request_is_an_authn_request(sp_class, idp):
    url, request_id = _sp(sp_class, idp).redirect_request(relay_state="/after")
    xml, params = inflate_redirect(url)
    request = etree.fromstring(xml)
    assert url.startswith(SSO_URL + "?")
    assert request.tag == f"{{{NS['samlp']}}}AuthnRequest"
    assert request.get("ID") == request_id
    assert request.get("AssertionConsumerServiceURL") == ACS_URL
    assert request.get("Destination") == SSO_URL
    assert request.findtext("saml:Issuer", namespaces=NS) == SP_ENTITY
    assert params["RelayState"] == "/after"
    assert "Signature" not in params


@pytest.mark.parametrize("sp_class", SPS)
def test_signed_redirect_request_verifies_with_the_sp_key(sp_class, idp, sp_keys):
    key, key_pem, cert_pem = sp_keys
    sp = _sp(sp_class, idp, sign_requests=True, key_pem=key_pem, cert_pem=cert_pem)
    url, _ = sp.redirect_request(relay_state="/after")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["SigAlg"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    signed = "&".join(f"{k}={quote(params[k], safe='')}" for k in ("SAMLRequest", "RelayState", "SigAlg"))
    key.public_key().verify(base64.b64decode(params["Signature"]), signed.encode(), padding.PKCS1v15(),
                            hashes.SHA256())
    assert f'entityID="{SP_ENTITY}"' in sp.metadata()


@pytest.mark.parametrize("sp_class", SPS)
def test_post_request_carries_an_authn_request(sp_class, idp):
    url, fields, request_id = _sp(sp_class, idp).post_request(relay_state="/after")
    request = etree.fromstring(base64.b64decode(fields["SAMLRequest"]))
    assert url == SSO_URL
    assert fields["RelayState"] == "/after"
    assert request.get("ID") == request_id
    assert request.get("AssertionConsumerServiceURL") == ACS_URL


@pytest.mark.parametrize("sp_class", SPS)
def test_logout_request(sp_class, idp):
    url, request_id = _sp(sp_class, idp).logout_request(name_id=EMAIL, session_index="_session-1")
    request = etree.fromstring(inflate_redirect(url)[0])
    assert url.startswith(f"{SSO_URL}/logout?")
    assert request.get("ID") == request_id
    assert request.findtext("saml:NameID", namespaces=NS) == EMAIL
    assert request.findtext("samlp:SessionIndex", namespaces=NS) == "_session-1"


def test_post_form_reads_an_auto_submitting_form():
    html = ('<html><body onload="document.forms[0].submit()"><form method="post" action="https://sp.test/acs">'
            '<input type="hidden" name="SAMLResponse" value="PHg+"/><input type="hidden" name="RelayState" '
            'value="a&amp;b"/><noscript><input type="submit" value="Continue"/></noscript></form></body></html>')
    assert post_form(html) == ("https://sp.test/acs", {"SAMLResponse": "PHg+", "RelayState": "a&b"})
