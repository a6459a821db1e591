"""Parser attacks on what service providers send, refused with a clear message and never a 500.

Each attack is tried on `bastion.saml.requests` directly and through HTTP (`/samlp/{client_id}`):

- XXE: a DOCTYPE with an external entity (`file:///etc/passwd`), an external DTD, a parameter
  entity: refused before anything is read, nothing from the file shows.
- Billion laughs (nested entity expansion): refused, quickly, without expanding.
- A deflate bomb (an HTTP-Redirect SAMLRequest inflating to megabytes): refused after
  64 KiB of output; an oversized HTTP-POST message too.
- XML signature wrapping: a validly signed AuthnRequest (python3-saml's and signxml's
  signatures with the SP's key) wrapped in an attacker's AuthnRequest (another ID, another
  ACS URL), the original inside <samlp:Extensions> or inside the signature's <ds:Object>, with
  the Signature left in place, moved to the new root, or the new root reusing the signed ID;
  content added to a signed request; all refused. The unwrapped request is accepted.
- A redirect signature must cover every parameter Bastion reads, whatever the spelling of
  its name.
- Malformed requests (not base64, not DEFLATE, not XML, another message type, SAML 1.1, a bad
  ID or IssueInstant, another Destination, an unsupported response binding) get a readable
  400 page.
"""

from __future__ import annotations

import base64
import time
import zlib
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from signxml import XMLSigner, methods

from bastion.saml import requests as saml_requests
from bastion.saml.requests import SamlRequestError
from tests.conftest import Bastion
from tests.saml_sp import OneLoginSP
from tests.test_saml_idp import (
    ACS, NS, SP_ENTITY, assert_refused_page, authn_request_xml, deflated, key_pair, saml_app, shows_login_page,
)

pytestmark = pytest.mark.postgres

ATTACKER_ACS = "https://sp.test/attacker-acs"  # registered too: only the signature stops the wrapped request
DTD_REFUSED = "The SAML message was refused: it contains a DTD or entity declaration"
NOT_SIGNED = "This application requires signed requests, and this one is not signed."
NOT_COVERED = "The request's signature does not cover the request itself."
DOES_NOT_VERIFY = "The request's signature does not verify with the application's certificate"
TOO_LARGE = "The SAML message is too large."


def _request_body(entity_reference: str) -> str:
    return (
        f'<samlp:AuthnRequest xmlns:samlp="{NS["samlp"]}" xmlns:saml="{NS["saml"]}" ID="_x" Version="2.0" '
        f'IssueInstant="{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}" AssertionConsumerServiceURL="{ACS}">'
        f"<saml:Issuer>{entity_reference}</saml:Issuer></samlp:AuthnRequest>"
    )


XXE = ('<?xml version="1.0"?><!DOCTYPE samlp:AuthnRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       + _request_body("&xxe;")).encode()
EXTERNAL_DTD = ('<?xml version="1.0"?><!DOCTYPE samlp:AuthnRequest SYSTEM "http://127.0.0.1:9/evil.dtd">'
                + _request_body(SP_ENTITY)).encode()
PARAMETER_ENTITY = ('<?xml version="1.0"?><!DOCTYPE samlp:AuthnRequest [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>'
                    + _request_body(SP_ENTITY)).encode()
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE samlp:AuthnRequest [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]>" + _request_body("&lol9;")
).encode()
DTD_ATTACKS = {"XXE": XXE, "external DTD": EXTERNAL_DTD, "parameter entity": PARAMETER_ENTITY, "billion laughs": BILLION_LAUGHS}


def deflate_bomb(size: int = 20 * 1024 * 1024) -> str:
    """A SAMLRequest for HTTP-Redirect: `size` bytes of XML-ish padding, deflated to a few KiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b" " * (1024 * 1024)
    payload = compressor.compress(b"<samlp:AuthnRequest ")
    for _ in range(size // len(chunk)):
        payload += compressor.compress(chunk)
    return base64.b64encode(payload + compressor.flush()).decode()


# -- XXE and entity expansion ----------------------------------------------------------------


@pytest.mark.parametrize("attack", DTD_ATTACKS)
def test_dtds_and_entities_are_refused_by_the_parser(attack):
    xml = DTD_ATTACKS[attack]
    started = time.monotonic()
    for read in (saml_requests.read_authn_request, saml_requests.read_logout_message,
                 lambda x: saml_requests.check_post_signature(x, key_pair("sp.test")[1])):
        with pytest.raises(SamlRequestError, match=DTD_REFUSED):
            read(xml)
    assert time.monotonic() - started < 1  # nothing was expanded or fetched


async def test_dtds_and_entities_are_refused_over_http(bastion: Bastion):
    client, _ = await saml_app(bastion)
    for attack, xml in DTD_ATTACKS.items():
        redirect = await bastion.http.get(f"/samlp/{client['client_id']}", params={"SAMLRequest": deflated(xml)})
        post = await bastion.http.post(f"/samlp/{client['client_id']}", data={"SAMLRequest": base64.b64encode(xml).decode()})
        for response in (redirect, post):
            assert_refused_page(response, DTD_REFUSED)
            assert "root:" not in response.text, attack


async def test_xxe_is_refused_before_the_signature_is_checked(bastion: Bastion):
    client, _ = await saml_app(bastion, signingCert=key_pair("sp.test")[1])
    response = await bastion.http.post(f"/samlp/{client['client_id']}", data={"SAMLRequest": base64.b64encode(XXE).decode()})
    assert_refused_page(response, DTD_REFUSED)


# -- deflate bombs and size limits -----------------------------------------------------------


def test_a_deflate_bomb_is_refused_after_64_kib():
    bomb = deflate_bomb()
    assert len(bomb) < 2 * saml_requests.MAX_MESSAGE_BYTES  # small enough to pass the size check before inflating
    started = time.monotonic()
    with pytest.raises(SamlRequestError, match=TOO_LARGE):
        saml_requests.decode_message(bomb, deflated=True)
    assert time.monotonic() - started < 1
    with pytest.raises(SamlRequestError, match="not DEFLATE-encoded"):
        saml_requests.decode_message(base64.b64encode(b"\xff" * 64).decode(), deflated=True)
    with pytest.raises(SamlRequestError, match=TOO_LARGE):  # HTTP-POST: base64 only, no inflating
        saml_requests.decode_message(base64.b64encode(b" " * (saml_requests.MAX_MESSAGE_BYTES + 1)).decode(), deflated=False)


async def test_a_deflate_bomb_is_refused_over_http(bastion: Bastion):
    client, _ = await saml_app(bastion)
    response = await bastion.http.get(f"/samlp/{client['client_id']}", params={"SAMLRequest": deflate_bomb()})
    assert_refused_page(response, TOO_LARGE)
    # By HTTP-POST the whole body is limited first (settings.max_body_bytes, 64 KiB): 413, before SAML reads it.
    big = base64.b64encode(b" " * (saml_requests.MAX_MESSAGE_BYTES + 1)).decode()
    response = await bastion.http.post(f"/samlp/{client['client_id']}", data={"SAMLRequest": big})
    assert response.status_code == 413 and "SAMLResponse" not in response.text


# -- XML signature wrapping ------------------------------------------------------------------


def signxml_signed(xml: bytes) -> bytes:
    """`xml` enveloped-signed by the SP's key with signxml (RSA-SHA256, exclusive c14n), the signature after Issuer."""
    key_pem, cert_pem = key_pair("sp.test")
    root = etree.fromstring(xml)
    root.find("saml:Issuer", NS).addnext(etree.Element(f"{{{NS['ds']}}}Signature", {"Id": "placeholder"}, nsmap={"ds": NS["ds"]}))
    signer = XMLSigner(method=methods.enveloped, signature_algorithm="rsa-sha256", digest_algorithm="sha256",
                       c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
    return etree.tostring(signer.sign(root, key=serialization.load_pem_private_key(key_pem.encode(), None), cert=[cert_pem]))


def wrapped(signed: bytes, *, signature: str, same_id: bool = False) -> bytes:
    """An attacker's AuthnRequest around a signed one.

    signature: "inside"   the original keeps its Signature, inside <samlp:Extensions>;
               "root"     the Signature moved to the new root, the original inside <samlp:Extensions>;
               "object"   the Signature moved to the new root, the original inside its <ds:Object>.
    same_id: the new root takes the original's ID.
    """
    original = etree.fromstring(signed)
    attacker = etree.Element(f"{{{NS['samlp']}}}AuthnRequest", {
        "ID": original.get("ID") if same_id else "_attacker", "Version": "2.0", "IssueInstant": original.get("IssueInstant"),
        "Destination": original.get("Destination") or "", "AssertionConsumerServiceURL": ATTACKER_ACS,
        "ForceAuthn": "false", "ProtocolBinding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
    }, nsmap={"samlp": NS["samlp"], "saml": NS["saml"]})
    etree.SubElement(attacker, f"{{{NS['saml']}}}Issuer").text = SP_ENTITY
    extensions = etree.SubElement(attacker, f"{{{NS['samlp']}}}Extensions")
    if signature == "inside":
        extensions.append(original)
        return etree.tostring(attacker)
    signature_element = original.find("ds:Signature", NS)
    original.remove(signature_element)
    attacker.find("saml:Issuer", NS).addnext(signature_element)
    if signature == "object":
        etree.SubElement(signature_element, f"{{{NS['ds']}}}Object").append(original)
    else:
        extensions.append(original)
    return etree.tostring(attacker)


def with_content_added(signed: bytes) -> bytes:
    """The signed request itself, an Extensions element added after signing."""
    root = etree.fromstring(signed)
    etree.SubElement(root, f"{{{NS['samlp']}}}Extensions").text = "added"
    return etree.tostring(root)


WRAPPINGS = {
    "original with its signature, in Extensions": (lambda s: wrapped(s, signature="inside"), NOT_SIGNED),
    "signature moved to the new root, original in Extensions": (lambda s: wrapped(s, signature="root"), NOT_COVERED),
    "signature moved to the new root, original in ds:Object": (lambda s: wrapped(s, signature="object"), NOT_COVERED),
    # signxml itself refuses a reference that resolves to two elements ("Ambiguous reference URI").
    "new root with the signed ID, original in Extensions": (lambda s: wrapped(s, signature="root", same_id=True), DOES_NOT_VERIFY),
    "new root with the signed ID, original in ds:Object": (lambda s: wrapped(s, signature="object", same_id=True), DOES_NOT_VERIFY),
    "content added after signing": (with_content_added, DOES_NOT_VERIFY),
}


@pytest.mark.parametrize("wrapping", WRAPPINGS)
def test_signature_wrapping_is_refused_by_the_signature_check(wrapping):
    certificate = key_pair("sp.test")[1]
    signed = signxml_signed(authn_request_xml("client-1", request_id="_signed-original"))
    checked = saml_requests.check_post_signature(signed, certificate)  # the original passes, and reads as itself
    assert saml_requests.read_authn_request(signed, root=checked).id == "_signed-original"

    wrap, message = WRAPPINGS[wrapping]
    attack = wrap(signed)
    assert saml_requests.read_authn_request(attack).acs_url in (ATTACKER_ACS, ACS)  # well-formed: only the signature refuses it
    with pytest.raises(SamlRequestError) as refused:
        saml_requests.check_post_signature(attack, certificate)
    assert str(refused.value).startswith(message)


async def test_signature_wrapping_is_refused_over_http(bastion: Bastion):
    """The signed request is python3-saml's own (xmlsec1, the SP's key), sent by HTTP-POST."""
    key_pem, cert_pem = key_pair("sp.test")
    _, metadata = await saml_app(bastion, callbacks=[ACS, ATTACKER_ACS], signingCert=cert_pem)
    sp = OneLoginSP(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS, sign_requests=True, key_pem=key_pem, cert_pem=cert_pem)
    url, fields, _ = sp.post_request(relay_state="r")
    signed = base64.b64decode(fields["SAMLRequest"])
    for wrapping, (wrap, message) in WRAPPINGS.items():
        response = await bastion.http.post(url, data={**fields, "SAMLRequest": base64.b64encode(wrap(signed)).decode()})
        assert response.status_code == 400, wrapping
        assert_refused_page(response, message)
    assert shows_login_page(await bastion.http.post(url, data=fields))  # as signed, it is accepted


# -- the redirect binding's signed parameters ---------------------------------------------------


def test_a_redirect_signature_covers_parameters_whatever_the_spelling_of_their_names():
    key_pem, cert_pem = key_pair("sp.test")
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    query = urlencode({"SAMLRequest": deflated(authn_request_xml("client-1")),
                       "SigAlg": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"})
    query += "&Signature=" + quote(base64.b64encode(key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())).decode(), safe="")
    saml_requests.check_redirect_signature(query, cert_pem)
    for added in ("RelayState=evil", "Relay%53tate=evil", "Relay%53tate=", "SAML%52equest=x"):
        with pytest.raises(SamlRequestError):
            saml_requests.check_redirect_signature(f"{query}&{added}", cert_pem)


# -- malformed requests ----------------------------------------------------------------------


async def test_malformed_requests_get_a_readable_page(bastion: Bastion):
    client, _ = await saml_app(bastion)
    client_id = client["client_id"]
    good = authn_request_xml(client_id).decode()
    cases = {
        "not base64": ("%%%", "The SAML message is not valid base64."),
        "not DEFLATE": (base64.b64encode(b"\xff\x00garbage").decode(), "is not DEFLATE-encoded"),
        "not XML": (deflated(b"hello"), "The SAML message is not well-formed XML"),
        "a LogoutRequest": (deflated(good.replace("AuthnRequest", "LogoutRequest").encode()), "Expected a SAML AuthnRequest, not LogoutRequest."),
        "SAML 1.1": (deflated(good.replace('Version="2.0"', 'Version="1.1"').encode()), "Only SAML 2.0 messages are accepted."),
        "an ID that is not an NCName": (deflated(good.replace('ID="_req-handmade-1"', 'ID="1 2"').encode()), "The SAML message has no valid ID."),
        "no IssueInstant date": (deflated(good.replace("IssueInstant=", "IssueInstant=\"soon\" X=").encode()), "IssueInstant is not a date-time."),
        "another Destination": (deflated(good.replace(f"/samlp/{client_id}", "/samlp/other").encode()), "is not this endpoint."),
        "the artifact binding": (deflated(good.replace("bindings:HTTP-POST", "bindings:HTTP-Artifact").encode()),
                                 "Bastion delivers SAML responses by the HTTP-POST binding only"),
    }
    for case, (saml_request, message) in cases.items():
        response = await bastion.http.get(f"/samlp/{client_id}?" + urlencode({"SAMLRequest": saml_request}))
        assert response.status_code == 400, case
        assert_refused_page(response, message)
    response = await bastion.http.post(f"/samlp/{client_id}", data={"RelayState": "x"})
    assert_refused_page(response, "The form carries no SAMLRequest.")
