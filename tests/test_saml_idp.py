"""Bastion as a SAML 2.0 identity provider, consumed by two real service providers
(pysaml2 with xmlsec1, and python3-saml). What is proven, on SQLite and PostgreSQL:

- SP-initiated SSO by HTTP-Redirect and HTTP-POST, for both SPs: RelayState kept,
  InResponseTo set, the SP accepts, the default attributes and a multi-valued one come out.
- IdP-initiated SSO (no AuthnRequest): both SPs accept it as unsolicited, audience as configured.
- The ACS URL is taken from the request only when it is exactly one of the client's
  callbacks; otherwise a readable 400 page and no SAMLResponse.
- A live SSO session answers a second login directly; ForceAuthn shows the login page;
  IsPassive without a session (or with ForceAuthn) gets a signed NoPassive error Response
  that neither SP takes as a login.
- The SPs refuse a response with one byte changed inside the signed assertion, a wrong
  audience, an expired assertion. `signResponse` signs the Response instead of the assertion.
- Signed AuthnRequests (`signingCert`): accepted when signed with the SP's key (both
  bindings); refused unsigned, signed by another key, or altered after signing.
- Replay and clock checks on AuthnRequests.
- Metadata lists the current certificate; after a rotation both, the new first, and
  responses are signed with the new key (an SP that knows only the old one refuses them).
- Unknown clients and clients without the samlp addon get 404 pages.
- The Management API stores `addons.samlp` in Auth0's names and refuses invalid settings
  with Auth0's error body naming the field.
- Single logout ends the SSO session and answers a signed LogoutResponse (HTTP-POST or
  HTTP-Redirect with a query-string signature).
- Rules: a denial becomes a signed RequestDenied Response with the rule's message; rules
  see `protocol == "samlp"` and `saml_configuration`, and what they change applies to
  that response only.

Parser attacks (XXE, entity expansion, deflate bombs, signature wrapping) are in
tests/test_saml_requests.py.
"""

from __future__ import annotations

import base64
import calendar
import zlib
from datetime import datetime, timedelta, timezone
from functools import cache
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_REDIRECT, time_util
from signxml import XMLVerifier

from tests.conftest import PASSWORD, Bastion, add_rule, form_field
from tests.saml_sp import OneLoginSP, Pysaml2SP, SpRejected, inflate_redirect, post_form

pytestmark = pytest.mark.postgres

SP_ENTITY = "https://sp.test/metadata"
ACS = "https://sp.test/acs"
SLO = "https://sp.test/slo"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
ROLES = "https://example.com/roles"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
HTTP_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SPS = [Pysaml2SP, OneLoginSP]
# How each library reports a non-Success status: pysaml2 raises Status<SubStatus> (StatusNoPassive...);
# python3-saml says the status was not Success.
NOT_SUCCESS = r"StatusNoPassive|StatusRequestDenied|The status code of the Response was not Success, was Responder"


# -- helpers: the application, the SPs, the HTTP bindings -----------------------------------


async def saml_app(bastion: Bastion, *, name: str = "SAML App", callbacks: list[str] | None = None, **addon) -> tuple[dict, str]:
    """A client with `addons.samlp = addon` (Auth0's names): (client, its IdP metadata XML)."""
    client = await bastion.create_client(name=name, callbacks=callbacks or [ACS], addons={"samlp": addon})
    metadata = await bastion.http.get(f"/samlp/metadata/{client['client_id']}")
    assert metadata.status_code == 200, metadata.text
    return client, metadata.text


def make_sp(sp_class, metadata: str, **options):
    """An SP of `sp_class` (entity SP_ENTITY, ACS) trusting the IdP `metadata`."""
    return sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=options.pop("acs_url", ACS), **options)


async def get(bastion: Bastion, url: str):
    """GET an absolute Bastion URL as a browser would, the query string exactly as built."""
    parts = urlsplit(url)
    return await bastion.http.get(f"{parts.path}?{parts.query}" if parts.query else parts.path)


async def send_authn_request(bastion: Bastion, sp, binding: str, *, relay_state: str | None = None):
    """The SP's AuthnRequest, by "redirect" or "post": (Bastion's answer, the request ID)."""
    if binding == "redirect":
        url, request_id = sp.redirect_request(relay_state=relay_state)
        return await get(bastion, url), request_id
    url, fields, request_id = sp.post_request(relay_state=relay_state)
    return await bastion.http.post(url, data=fields), request_id


def authn_request_url(sp, *, force_authn: bool = False, is_passive: bool = False) -> tuple[str, str]:
    """An HTTP-Redirect AuthnRequest with ForceAuthn / IsPassive, built by the SP library: (url, ID)."""
    if isinstance(sp, Pysaml2SP):
        flags = {**({"force_authn": "true"} if force_authn else {}), **({"is_passive": "true"} if is_passive else {})}
        request_id, info = sp.client.prepare_for_authenticate(
            entityid=sp.idp_entity_id, relay_state="", binding=BINDING_HTTP_REDIRECT, sign=sp.sign_requests, **flags)
        return dict(info["headers"])["Location"], request_id
    acs = urlsplit(sp.acs_url)
    auth = OneLogin_Saml2_Auth({"https": "on", "http_host": acs.netloc, "script_name": acs.path, "get_data": {},
                                "post_data": {}}, sp.settings())
    return auth.login(force_authn=force_authn, is_passive=is_passive), auth.get_last_request_id()


async def log_in(bastion: Bastion, response, email="alice@example.com", password=PASSWORD):
    """Follow Bastion's login page (if any) to the auto-submitting form for the SP: (action, fields)."""
    if response.status_code == 302 and response.headers["location"].startswith("/u/login"):
        page = await bastion.http.get(response.headers["location"])
        response = await bastion.http.post(response.headers["location"], data={
            "state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
            "username": email, "password": password})
    assert response.status_code == 200, response.text
    return post_form(response.text)


async def sp_login(bastion: Bastion, sp, *, binding: str = "redirect", relay_state: str | None = None):
    """A whole SP-initiated login: (SAMLResponse base64, RelayState, request ID)."""
    response, request_id = await send_authn_request(bastion, sp, binding, relay_state=relay_state)
    action, fields = await log_in(bastion, response)
    assert action == sp.acs_url
    return fields["SAMLResponse"], fields.get("RelayState"), request_id


def shows_login_page(response) -> bool:
    return response.status_code == 302 and response.headers["location"].startswith("/u/login")


def assert_refused_page(response, message: str, status: int = 400) -> None:
    """A readable HTML page with `message`, and no SAML response anywhere."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text.replace("&#39;", "'"), response.text
    assert "SAMLResponse" not in response.text and "location" not in response.headers


def xml_of(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def status_codes(root: etree._Element) -> list[str]:
    return [code.get("Value").removeprefix(STATUS) for code in root.iter(f"{{{NS['samlp']}}}StatusCode")]


def metadata_certificates(metadata: str) -> list[str]:
    """The signing certificates an IdP metadata document lists, base64 DER, in order."""
    root = etree.fromstring(metadata.encode())
    return [c.text.strip() for c in root.iterfind("md:IDPSSODescriptor/md:KeyDescriptor/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)]


def metadata_trusting(metadata: str, certificate_base64: str) -> str:
    """`metadata` with its other signing certificates taken out: what an SP that never read the new one knows."""
    root = etree.fromstring(metadata.encode())
    for descriptor in root.iterfind("md:IDPSSODescriptor/md:KeyDescriptor", NS):
        if descriptor.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS).strip() != certificate_base64:
            descriptor.getparent().remove(descriptor)
    assert metadata_certificates(etree.tostring(root).decode()) == [certificate_base64]
    return etree.tostring(root).decode()


def pem(certificate_base64: str) -> str:
    return f"-----BEGIN CERTIFICATE-----\n{certificate_base64}\n-----END CERTIFICATE-----\n"


def verify_idp_signature(xml: bytes, metadata: str) -> etree._Element:
    """The message's enveloped signature, checked with signxml against the IdP's current certificate;
    returns the message, which must be what the signature covers."""
    signed = XMLVerifier().verify(xml, x509_cert=pem(metadata_certificates(metadata)[0])).signed_xml
    root = etree.fromstring(xml)
    assert signed.tag == root.tag and signed.get("ID") == root.get("ID")
    return root


def verify_redirect_signature(url: str, metadata: str) -> dict[str, str]:
    """SAML Bindings §3.4.4.1: the signature over the query string as sent, with the IdP's certificate."""
    raw = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
    assert unquote_plus(raw["SigAlg"]) == RSA_SHA256
    signed = "&".join(f"{name}={raw[name]}" for name in ("SAMLResponse", "RelayState", "SigAlg") if name in raw)
    certificate = x509.load_pem_x509_certificate(pem(metadata_certificates(metadata)[0]).encode())
    certificate.public_key().verify(base64.b64decode(unquote_plus(raw["Signature"])), signed.encode(),
                                    padding.PKCS1v15(), hashes.SHA256())
    return {name: unquote_plus(value) for name, value in raw.items()}


@cache
def key_pair(common_name: str) -> tuple[str, str]:
    """An RSA key and a self-signed certificate for an SP: (key PEM, certificate PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem.decode(), certificate.public_bytes(serialization.Encoding.PEM).decode()


def sp_keys(common_name: str = "sp.test") -> dict[str, str]:
    key_pem, cert_pem = key_pair(common_name)
    return {"key_pem": key_pem, "cert_pem": cert_pem}


def authn_request_xml(client_id: str, *, request_id: str = "_req-handmade-1", issue_instant: datetime | None = None,
                      acs: str = ACS) -> bytes:
    """An AuthnRequest written by hand (for the cases no SP library will produce)."""
    moment = (issue_instant or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<samlp:AuthnRequest xmlns:samlp="{NS["samlp"]}" xmlns:saml="{NS["saml"]}" ID="{request_id}" Version="2.0" '
        f'IssueInstant="{moment}" Destination="https://bastion.test/samlp/{client_id}" '
        f'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" AssertionConsumerServiceURL="{acs}">'
        f"<saml:Issuer>{SP_ENTITY}</saml:Issuer></samlp:AuthnRequest>"
    ).encode()


def deflated(xml: bytes) -> str:
    """HTTP-Redirect encoding: raw DEFLATE, then base64."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode()


def redirect_url(client_id: str, xml: bytes, **params) -> str:
    return f"/samlp/{client_id}?" + urlencode({"SAMLRequest": deflated(xml), **params})


# -- SP-initiated and IdP-initiated SSO ------------------------------------------------------


@pytest.mark.parametrize("binding", ["redirect", "post"])
@pytest.mark.parametrize("sp_class", SPS)
async def test_sp_initiated_login(bastion: Bastion, sp_class, binding):
    user = await bastion.create_user(name="Alice Example", given_name="Alice", app_metadata={"roles": ["editor", "viewer"]})
    _, metadata = await saml_app(bastion, mappings={"app_metadata.roles": ROLES})
    sp = make_sp(sp_class, metadata)
    saml_response, relay_state, request_id = await sp_login(bastion, sp, binding=binding, relay_state="back-to-/reports")
    assert relay_state == "back-to-/reports"
    assert xml_of(saml_response).get("InResponseTo") == request_id
    login = sp.accept(saml_response, request_id=request_id)
    assert login.in_response_to == request_id
    assert login.audience == [SP_ENTITY]
    assert login.name_id == user["user_id"]
    assert login.attributes[f"{CLAIMS}/nameidentifier"] == [user["user_id"]]
    assert login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]
    assert login.attributes[f"{CLAIMS}/name"] == ["Alice Example"]
    assert login.attributes[f"{CLAIMS}/givenname"] == ["Alice"]
    assert login.attributes[ROLES] == ["editor", "viewer"]  # a list: one attribute, two values


@pytest.mark.parametrize("sp_class", SPS)
async def test_idp_initiated_login(bastion: Bastion, sp_class):
    await bastion.create_user()
    client, metadata = await saml_app(bastion, audience=SP_ENTITY)
    response = await bastion.http.get(f"/samlp/{client['client_id']}", params={"RelayState": "/dashboard"})
    assert shows_login_page(response)
    action, fields = await log_in(bastion, response)
    assert action == ACS and fields["RelayState"] == "/dashboard"
    assert xml_of(fields["SAMLResponse"]).get("InResponseTo") is None
    login = make_sp(sp_class, metadata, allow_unsolicited=True).accept(fields["SAMLResponse"])
    assert login.audience == [SP_ENTITY]
    assert login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]
    if sp_class is Pysaml2SP:  # pysaml2 does refuse unsolicited responses unless told otherwise
        with pytest.raises(SpRejected):
            make_sp(sp_class, metadata).accept(fields["SAMLResponse"])


async def test_acs_url_must_be_one_of_the_callbacks(bastion: Bastion):
    _, metadata = await saml_app(bastion)
    for acs in ("https://evil.test/acs", ACS + "/more", ACS + "?next=https://evil.test", ACS.replace("https", "http")):
        for binding in ("redirect", "post"):
            response, _ = await send_authn_request(bastion, make_sp(Pysaml2SP, metadata, acs_url=acs), binding)
            assert_refused_page(response, f"The AssertionConsumerServiceURL {acs} is not one of this application's allowed callback URLs.")


# -- the SSO session, ForceAuthn and IsPassive -----------------------------------------------


@pytest.mark.parametrize("sp_class", SPS)
async def test_sso_session_force_authn_and_is_passive(bastion: Bastion, sp_class):
    await bastion.create_user()
    _, metadata = await saml_app(bastion)
    sp = make_sp(sp_class, metadata)

    url, request_id = authn_request_url(sp, is_passive=True)  # no session yet
    assert_no_passive(await get(bastion, url), metadata, sp, request_id)

    first, _, first_id = await sp_login(bastion, sp)
    sp.accept(first, request_id=first_id)

    url, request_id = authn_request_url(sp)  # the session answers, no login page
    response = await get(bastion, url)
    assert response.status_code == 200, response.headers
    action, fields = post_form(response.text)
    assert action == ACS and sp.accept(fields["SAMLResponse"], request_id=request_id).in_response_to == request_id

    url, request_id = authn_request_url(sp, is_passive=True)  # passive, with a session: answered
    action, fields = post_form((await get(bastion, url)).text)
    assert sp.accept(fields["SAMLResponse"], request_id=request_id).in_response_to == request_id

    url, request_id = authn_request_url(sp, force_authn=True)
    response = await get(bastion, url)
    assert shows_login_page(response)
    action, fields = await log_in(bastion, response)
    assert sp.accept(fields["SAMLResponse"], request_id=request_id).in_response_to == request_id

    # Passive and forced at once cannot be satisfied: a fresh login would need the login page.
    url, request_id = authn_request_url(sp, force_authn=True, is_passive=True)
    assert_no_passive(await get(bastion, url), metadata, sp, request_id)


def assert_no_passive(response, metadata: str, sp, request_id: str) -> None:
    """A signed Responder/NoPassive Response posted to the ACS, which the SP does not take as a login."""
    assert response.status_code == 200, response.headers
    action, fields = post_form(response.text)
    assert action == ACS
    root = verify_idp_signature(base64.b64decode(fields["SAMLResponse"]), metadata)
    assert status_codes(root) == ["Responder", "NoPassive"]
    assert root.get("InResponseTo") == request_id and root.find("saml:Assertion", NS) is None
    with pytest.raises(SpRejected, match=NOT_SUCCESS):
        sp.accept(fields["SAMLResponse"], request_id=request_id)


# -- what the SPs refuse -------------------------------------------------------------------


def both_sps(metadata: str, **options) -> list:
    return [make_sp(sp_class, metadata, **options) for sp_class in SPS]


@pytest.mark.parametrize("where", ["email attribute", "NameID"])
async def test_a_changed_byte_in_the_signed_assertion_is_rejected(bastion: Bastion, where):
    user = await bastion.create_user()
    _, metadata = await saml_app(bastion)
    sp, other = both_sps(metadata)
    saml_response, _, request_id = await sp_login(bastion, sp)
    xml = base64.b64decode(saml_response)
    if where == "NameID":
        original = f">{user['user_id']}</saml:NameID>".encode()
        tampered = xml.replace(original, original.replace(b"|", b"!"))
    else:
        tampered = xml.replace(b">alice@example.com<", b">alicf@example.com<", 1)
    assert len(tampered) == len(xml) and sum(a != b for a, b in zip(tampered, xml)) == 1
    for each in (sp, other):
        with pytest.raises(SpRejected, match="(?i)signature"):
            each.accept(base64.b64encode(tampered).decode(), request_id=request_id)
        assert each.accept(saml_response, request_id=request_id).name_id == user["user_id"]  # the original passes


async def test_wrong_audience_is_rejected(bastion: Bastion):
    await bastion.create_user()
    _, metadata = await saml_app(bastion, audience="https://someone-else.test")
    sps = both_sps(metadata)
    saml_response, _, request_id = await sp_login(bastion, sps[0])
    audience = xml_of(saml_response).find("saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience", NS)
    assert audience.text == "https://someone-else.test"
    for sp in sps:
        with pytest.raises(SpRejected, match="(?i)audience"):
            sp.accept(saml_response, request_id=request_id)


def sp_clocks_at(monkeypatch, epoch: int) -> None:
    """Both SP libraries' clocks, set to `epoch` (pysaml2's validate module and python3-saml's Utils.now)."""
    monkeypatch.setattr(time_util, "utc_now", lambda: epoch)
    monkeypatch.setattr(OneLogin_Saml2_Utils, "now", staticmethod(lambda: epoch))


async def test_expired_assertion_is_rejected(bastion: Bastion, monkeypatch):
    """lifetimeInSeconds: 1, and the SPs' clocks moved past NotOnOrAfter plus the skew each allows
    (pysaml2: accepted_time_diff, unset, so 0 s; python3-saml: ALLOWED_CLOCK_DRIFT, 300 s) instead of waiting."""
    await bastion.create_user()
    _, metadata = await saml_app(bastion, lifetimeInSeconds=1)
    sps = both_sps(metadata)
    saml_response, _, request_id = await sp_login(bastion, sps[0])
    conditions = xml_of(saml_response).find("saml:Assertion/saml:Conditions", NS)
    not_before, not_on_or_after = (datetime.fromisoformat(conditions.get(a).replace("Z", "+00:00"))
                                   for a in ("NotBefore", "NotOnOrAfter"))
    assert not_on_or_after - not_before == timedelta(seconds=1)
    issued = calendar.timegm(not_before.utctimetuple())

    sp_clocks_at(monkeypatch, issued)  # at the moment it was issued, both accept it
    for sp in sps:
        sp.accept(saml_response, request_id=request_id)
    pysaml2_skew = int(sps[0].client.config.accepted_time_diff or 0)
    skew = max(pysaml2_skew, OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT)
    assert (pysaml2_skew, skew) == (0, 300)
    sp_clocks_at(monkeypatch, issued + 1 + skew + 1)
    for sp in sps:  # pysaml2: "too old"; python3-saml: no SubjectConfirmation still valid, the Conditions expired
        with pytest.raises(SpRejected, match="too old|A valid SubjectConfirmation was not found|expired"):
            sp.accept(saml_response, request_id=request_id)


@pytest.mark.parametrize("sp_class", SPS)
async def test_sign_response_signs_the_response_instead_of_the_assertion(bastion: Bastion, sp_class):
    await bastion.create_user()
    _, metadata = await saml_app(bastion, signResponse=True)
    sp = make_sp(sp_class, metadata, want_response_signed=True, want_assertions_signed=False)
    saml_response, _, request_id = await sp_login(bastion, sp)
    root = verify_idp_signature(base64.b64decode(saml_response), metadata)
    assert root.find("ds:Signature", NS) is not None
    assert root.find("saml:Assertion/ds:Signature", NS) is None
    assert sp.accept(saml_response, request_id=request_id).in_response_to == request_id
    with pytest.raises(SpRejected, match="Assertion of the Response is not signed"):  # an SP that wants it signed
        make_sp(OneLoginSP, metadata, want_assertions_signed=True).accept(saml_response, request_id=request_id)


# -- signed AuthnRequests ------------------------------------------------------------------


@pytest.mark.parametrize("sp_class,binding", [(Pysaml2SP, "redirect"), (OneLoginSP, "redirect"),
                                              (OneLoginSP, "post"), (Pysaml2SP, "post")])
async def test_signed_authn_request_is_accepted(bastion: Bastion, sp_class, binding):
    await bastion.create_user()
    _, metadata = await saml_app(bastion, signingCert=sp_keys()["cert_pem"])
    assert 'WantAuthnRequestsSigned="true"' in metadata
    sp = make_sp(sp_class, metadata, sign_requests=True, **sp_keys())
    response, request_id = await send_authn_request(bastion, sp, binding, relay_state="signed-state")
    assert shows_login_page(response), response.text
    _, fields = await log_in(bastion, response)
    assert fields["RelayState"] == "signed-state"
    assert sp.accept(fields["SAMLResponse"], request_id=request_id).in_response_to == request_id


@pytest.mark.parametrize("signer,message", [
    (None, "This application requires signed requests, and this one is not signed."),
    ("someone-else.test", "The request's signature does not verify with the application's certificate"),
])
async def test_authn_request_unsigned_or_signed_by_another_key_is_refused(bastion: Bastion, signer, message):
    _, metadata = await saml_app(bastion, signingCert=sp_keys()["cert_pem"])
    sp = make_sp(Pysaml2SP, metadata, **({"sign_requests": True, **sp_keys(signer)} if signer else {}))
    for binding in ("redirect", "post"):
        response, _ = await send_authn_request(bastion, sp, binding)
        assert_refused_page(response, message)


def _reencoded(url: str, change) -> str:
    """The redirect URL with its SAMLRequest inflated, changed by `change(xml)`, deflated again; the rest as sent."""
    xml, _ = inflate_redirect(url)
    changed = change(xml)
    assert changed != xml
    base, _, query = url.partition("?")
    parts = [f"SAMLRequest={quote(deflated(changed), safe='')}" if p.startswith("SAMLRequest=") else p for p in query.split("&")]
    return base + "?" + "&".join(parts)


async def test_redirect_request_altered_after_signing_is_refused(bastion: Bastion):
    _, metadata = await saml_app(bastion, signingCert=sp_keys()["cert_pem"])
    sp = make_sp(Pysaml2SP, metadata, sign_requests=True, **sp_keys())
    url, _ = sp.redirect_request(relay_state="kept")
    without_relay_state, _ = sp.redirect_request()
    assert "RelayState=" not in without_relay_state
    does_not_verify = "The request's signature does not verify with the application's certificate."
    alterations = {
        "SAMLRequest": (_reencoded(url, lambda xml: xml.replace(b"ProtocolBinding=", b'ForceAuthn="true" ProtocolBinding=')),
                        does_not_verify),
        "RelayState": (url.replace("RelayState=kept", "RelayState=changed"), does_not_verify),
        # A percent-encoded name is still RelayState to Bastion, so it must be in the signed string too.
        "RelayState added, its name encoded": (without_relay_state + "&Relay%53tate=https%3A%2F%2Fevil.test%2F", does_not_verify),
        "SigAlg": (url.replace(quote(RSA_SHA256, safe=""), quote("http://www.w3.org/2000/09/xmldsig#rsa-sha1", safe="")),
                   "The signature algorithm http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted (use RSA-SHA256)."),
    }
    for alteration, (altered, message) in alterations.items():
        assert altered not in (url, without_relay_state), alteration
        assert_refused_page(await get(bastion, altered), message)
    for signed in (url, without_relay_state):  # as signed, both are accepted
        assert shows_login_page(await get(bastion, signed))


# -- replays and clocks ----------------------------------------------------------------------


async def test_replayed_authn_request_is_refused(bastion: Bastion):
    _, metadata = await saml_app(bastion)
    url, _ = make_sp(Pysaml2SP, metadata).redirect_request(relay_state="x")
    assert shows_login_page(await get(bastion, url))
    assert_refused_page(await get(bastion, url), "This SAML request was already used. Start again from the application.")


async def test_authn_request_issue_instant_is_checked(bastion: Bastion):
    client, _ = await saml_app(bastion)
    now = datetime.now(timezone.utc)
    for number, (offset, message) in enumerate([
        (timedelta(hours=1), "The SAML message was issued in the future: check the service provider's clock."),
        (-timedelta(hours=1), "The SAML message is too old. Start again from the application."),
        (timedelta(0), None),
    ]):
        xml = authn_request_xml(client["client_id"], request_id=f"_req-{number}", issue_instant=now + offset)
        response = await bastion.http.get(redirect_url(client["client_id"], xml))
        if message is None:
            assert shows_login_page(response)
        else:
            assert_refused_page(response, message)


# -- metadata and key rotation -----------------------------------------------------------------


async def test_metadata_lists_the_certificates_and_rotation_signs_with_the_new_key(bastion: Bastion):
    await bastion.create_user()
    client, old_metadata = await saml_app(bastion)
    both_sps(old_metadata)  # both libraries read it (their parsers raise otherwise)
    assert etree.fromstring(old_metadata.encode()).get("entityID") == "urn:bastion.test"
    old = metadata_certificates(old_metadata)
    assert old == [(await bastion.services.saml_keys.current()).certificate_base64]

    await bastion.services.saml_keys.rotate()
    new_metadata = (await bastion.http.get(f"/samlp/metadata/{client['client_id']}")).text
    new = metadata_certificates(new_metadata)
    assert len(new) == 2 and new[1] == old[0] and new[0] != old[0]
    assert new[0] == (await bastion.services.saml_keys.current()).certificate_base64

    new_sps, old_sps = both_sps(new_metadata), both_sps(metadata_trusting(new_metadata, old[0]))
    saml_response, _, request_id = await sp_login(bastion, new_sps[0])
    embedded = xml_of(saml_response).find("saml:Assertion/ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert "".join(embedded.text.split()) == new[0]
    for sp in new_sps:
        sp.accept(saml_response, request_id=request_id)
    for sp in old_sps:
        with pytest.raises(SpRejected, match="(?i)signature"):
            sp.accept(saml_response, request_id=request_id)

    await bastion.services.saml_keys.rotate()  # a second rotation retires the oldest certificate
    newest = metadata_certificates((await bastion.http.get(f"/samlp/metadata/{client['client_id']}")).text)
    assert len(newest) == 2 and newest[1] == new[0] and old[0] not in newest


async def test_unknown_client_or_client_without_samlp_is_a_404_page(bastion: Bastion):
    plain = await bastion.create_client(name="OIDC only")
    other_addon = await bastion.create_client(name="WS-Fed", addons={"wsfed": {}})
    for client_id in ("no-such-client", plain["client_id"], other_addon["client_id"]):
        for method, path in (("GET", f"/samlp/metadata/{client_id}"), ("GET", f"/samlp/{client_id}"),
                             ("POST", f"/samlp/{client_id}"), ("GET", f"/samlp/{client_id}/logout")):
            response = await bastion.http.request(method, path)
            assert_refused_page(response, "There is no SAML application with this client ID.", status=404)


# -- the Management API ----------------------------------------------------------------------


async def test_management_api_round_trips_the_samlp_addon(bastion: Bastion):
    addon = {
        "audience": "urn:sp", "recipient": ACS, "mappings": {"email": "http://example.com/email", "app_metadata.roles": [ROLES, "roles"]},
        "createUpnClaim": False, "passthroughClaimsWithNoMapping": False, "mapUnknownClaimsAsIs": True, "mapIdentities": False,
        "signatureAlgorithm": "rsa-sha512", "digestAlgorithm": "sha512", "lifetimeInSeconds": 600, "signResponse": True,
        "nameIdentifierFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "nameIdentifierProbes": [f"{CLAIMS}/emailaddress"], "typedAttributes": False, "includeAttributeNameFormat": False,
        "logout": {"callback": SLO, "slo_enabled": True}, "binding": HTTP_REDIRECT, "signingCert": sp_keys()["cert_pem"],
        "authnContextClassRef": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
    }
    client = await bastion.create_client(name="SAML App", callbacks=[ACS], addons={"samlp": addon, "box": {}})
    assert client["addons"] == {"samlp": addon, "box": {}}
    fetched = await bastion.management("GET", f"/clients/{client['client_id']}")
    assert fetched.json()["addons"] == {"samlp": addon, "box": {}}

    changed = {"audience": "urn:other", "lifetimeInSeconds": 60}
    patched = await bastion.management("PATCH", f"/clients/{client['client_id']}", json={"addons": {"samlp": changed}})
    assert patched.status_code == 200, patched.text
    fetched = await bastion.management("GET", f"/clients/{client['client_id']}")
    assert fetched.json()["addons"] == {"samlp": changed, "box": {}}  # the named addon replaced whole, the other kept


async def test_management_api_refuses_invalid_samlp_settings(bastion: Bastion):
    client = await bastion.create_client(name="Good", addons={"samlp": {}})
    for setting in ({"signatureAlgorithm": "rsa-sha1"}, {"digestAlgorithm": "sha1"}, {"lifetimeInSeconds": "x"},
                    {"lifetimeInSeconds": 0}, {"signResponse": "yes"}, {"fooBar": 1},
                    {"binding": "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"}, {"logout": {"callback": 5}},
                    {"logout": {"callback": SLO, "slo_enabled": "yes"}}, {"signingCert": "not a certificate"}):
        (field,) = setting
        created = await bastion.management("POST", "/clients", json={"name": "Bad", "callbacks": [ACS], "addons": {"samlp": setting}})
        patched = await bastion.management("PATCH", f"/clients/{client['client_id']}", json={"addons": {"samlp": setting}})
        for response in (created, patched):
            assert response.status_code == 400, response.text
            body = response.json()
            assert set(body) <= {"statusCode", "error", "message", "errorCode"} and body["statusCode"] == 400, body
            assert body["error"] == "Bad Request" and f"addons.samlp.{field}" in body["message"], body
    fetched = await bastion.management("GET", f"/clients/{client['client_id']}")
    assert fetched.json()["addons"] == {"samlp": {}}
    listed = await bastion.management("GET", "/clients")
    assert "Bad" not in [c["name"] for c in listed.json()]


# -- single logout ---------------------------------------------------------------------------


@pytest.mark.parametrize("binding", ["post", "redirect"])
async def test_single_logout(bastion: Bastion, binding):
    await bastion.create_user()
    redirect = {"binding": HTTP_REDIRECT} if binding == "redirect" else {}
    client, metadata = await saml_app(bastion, logout={"callback": SLO}, **redirect)
    sp = make_sp(Pysaml2SP, metadata, sls_url=SLO)
    saml_response, _, request_id = await sp_login(bastion, sp)
    login = sp.accept(saml_response, request_id=request_id)

    session_cookie = bastion.http.cookies["bastion_session"]
    url, logout_id = sp.logout_request(name_id=login.name_id, session_index=login.session_index)
    assert urlsplit(url).path == f"/samlp/{client['client_id']}/logout"
    response = await get(bastion, url)
    if binding == "post":
        assert response.status_code == 200, response.text
        action, fields = post_form(response.text)
        assert action == SLO
        root = verify_idp_signature(base64.b64decode(fields["SAMLResponse"]), metadata)
    else:
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(SLO + "?")
        params = verify_redirect_signature(location, metadata)
        assert set(params) >= {"SAMLResponse", "SigAlg", "Signature"}
        root = etree.fromstring(inflate_redirect(location)[0])
    assert root.tag == f"{{{NS['samlp']}}}LogoutResponse"
    assert root.get("InResponseTo") == logout_id and root.get("Destination") == SLO
    assert status_codes(root) == ["Success"]
    assert "bastion_session=" in response.headers.get("set-cookie", "")  # the cookie is cleared

    # The SSO session is over on the server, not only forgotten by this browser: with the old
    # cookie put back, a passive request gets NoPassive and a normal one the login page.
    bastion.http.cookies.set("bastion_session", session_cookie, domain="bastion.test")
    passive_url, passive_id = authn_request_url(sp, is_passive=True)
    assert_no_passive(await get(bastion, passive_url), metadata, sp, passive_id)
    assert shows_login_page(await get(bastion, authn_request_url(sp)[0]))


async def test_single_logout_without_a_callback_shows_the_logged_out_page(bastion: Bastion):
    await bastion.create_user()
    _, metadata = await saml_app(bastion)
    sp = make_sp(Pysaml2SP, metadata, sls_url=SLO)
    saml_response, _, request_id = await sp_login(bastion, sp)
    login = sp.accept(saml_response, request_id=request_id)
    response = await get(bastion, sp.logout_request(name_id=login.name_id)[0])
    assert response.status_code == 200 and "SAMLResponse" not in response.text
    assert shows_login_page(await get(bastion, authn_request_url(sp)[0]))


# -- rules -----------------------------------------------------------------------------------


async def test_a_rule_denial_is_a_signed_request_denied_response(bastion: Bastion):
    await bastion.create_user()
    await add_rule(bastion, 'def rule(user, context, api):\n    raise UnauthorizedError("no access for you")\n')
    _, metadata = await saml_app(bastion)
    sps = both_sps(metadata)
    saml_response, relay_state, request_id = await sp_login(bastion, sps[0], relay_state="after")
    assert relay_state == "after"
    root = verify_idp_signature(base64.b64decode(saml_response), metadata)
    assert status_codes(root) == ["Responder", "RequestDenied"]
    assert root.findtext("samlp:Status/samlp:StatusMessage", namespaces=NS) == "no access for you"
    assert root.get("InResponseTo") == request_id and root.find("saml:Assertion", NS) is None
    for sp in sps:
        with pytest.raises(SpRejected, match=NOT_SUCCESS):
            sp.accept(saml_response, request_id=request_id)


SEEING_RULE = '''
def rule(user, context, api):
    config = context.saml_configuration
    user.seen = "|".join([context.protocol, config["audience"], config["recipient"],
                          config["mappings"]["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"]])
    if context.client_name == "HR App":
        config["mappings"]["https://example.com/dept"] = "app_metadata.department"
        config["lifetime_in_seconds"] = 120
'''


async def test_rules_see_and_change_the_saml_configuration_of_one_response(bastion: Bastion):
    await bastion.create_user(app_metadata={"department": "Finance"})
    await add_rule(bastion, SEEING_RULE)
    seen = f"samlp|{SP_ENTITY}|{ACS}|email"
    lifetimes = {}
    for name in ("HR App", "Other App", "HR App"):  # the second HR login: the first one's change did not stick
        _, metadata = await saml_app(bastion, name=name)
        sp = make_sp(Pysaml2SP, metadata)
        saml_response, _, request_id = await sp_login(bastion, sp)
        login = sp.accept(saml_response, request_id=request_id)
        assert login.attributes["http://schemas.auth0.com/seen"] == [seen]
        conditions = xml_of(saml_response).find("saml:Assertion/saml:Conditions", NS)
        lifetime = (datetime.fromisoformat(conditions.get("NotOnOrAfter").replace("Z", "+00:00"))
                    - datetime.fromisoformat(conditions.get("NotBefore").replace("Z", "+00:00")))
        lifetimes.setdefault(name, set()).add(lifetime)
        if name == "HR App":
            assert login.attributes["https://example.com/dept"] == ["Finance"]
        else:
            assert "https://example.com/dept" not in login.attributes
    assert lifetimes == {"HR App": {timedelta(seconds=120)}, "Other App": {timedelta(seconds=3600)}}


MFA_ON_SAML_RULE = '''
def rule(user, context, api):
    if context.protocol == "samlp":
        context.multifactor = {"provider": "any", "allow_remember_browser": False}
'''


async def test_a_saml_login_pauses_for_mfa_and_the_response_follows_the_second_factor(bastion: Bastion):
    """The rules ask for MFA: the browser enrols an authenticator at /u/mfa, and only then does
    the SP receive its response (same InResponseTo and RelayState); the next login is challenged."""
    await bastion.create_user()
    await add_rule(bastion, MFA_ON_SAML_RULE)
    _, metadata = await saml_app(bastion)
    sp = make_sp(Pysaml2SP, metadata)
    response, request_id = await send_authn_request(bastion, sp, "redirect", relay_state="after-mfa")
    page = await bastion.http.get(response.headers["location"])
    paused = await bastion.http.post(response.headers["location"], data={
        "state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
        "username": "alice@example.com", "password": PASSWORD})
    assert paused.status_code == 302 and paused.headers["location"].startswith("/u/mfa?"), paused.text
    assert "SAMLResponse" not in paused.text
    state = paused.headers["location"].split("state=")[1]
    enrol_url = f"/u/mfa/otp/enroll?state={state}"
    page = await bastion.http.get(enrol_url)
    totp = pyotp.TOTP(page.text.split('id="otp-secret">')[1].split("<")[0])
    fields = {k: form_field(page.text, k) for k in ("state", "csrf_token", "authenticator_id")}
    done = await bastion.http.post(enrol_url, data={**fields, "code": totp.now()})
    assert done.status_code == 200, done.text
    answer = await bastion.http.post(f"/u/mfa/continue?state={state}",
                                     data={"state": state, "csrf_token": form_field(done.text, "csrf_token")})
    action, form = post_form(answer.text)
    assert action == ACS and form["RelayState"] == "after-mfa"
    login = sp.accept(form["SAMLResponse"], request_id=request_id)
    assert login.in_response_to == request_id and login.name_id.startswith("auth0|")
    # The next SAML login rides on the session but is challenged again (the rule does not remember).
    response, _ = await send_authn_request(bastion, sp, "redirect")
    assert response.status_code == 302 and response.headers["location"].startswith("/u/mfa?")
