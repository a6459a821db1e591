"""The SAML rule templates, each proven end to end by real SAML service providers:
templates/rules/saml_aws_role_mapping.py, saml_sharepoint_groups.py,
saml_customize_response.py and saml_signing_key.py; and a SAML login that pauses for a
rule's redirect and resumes at /continue.

Every template is stored from its file with the Management API (`POST /api/v2/rules`),
its configuration set with `PUT /api/v2/rules-configs/{key}`, and the SAML application
created with `POST /api/v2/clients` (`addons.samlp`). The service provider is configured
from Bastion's metadata (`/samlp/metadata/{client_id}`) and starts the login with an
AuthnRequest (HTTP-Redirect binding): pysaml2 (xmlsec1) and python3-saml
(tests/saml_sp.py) check the Response as they would in production (signature against the
metadata's certificate, audience, recipient, destination, time, InResponseTo) before the
test looks at what they extracted. A fresh "browser" (an httpx client with its own
cookies, on the ASGI app) does what a user does: the login form, and the auto-submitting
form that posts the SAMLResponse to the service provider's ACS URL.

Runs on SQLite and on PostgreSQL (the `bastion` fixture, `pytestmark`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.conftest import ISSUER, PASSWORD, Bastion, form_field
from tests.saml_sp import OneLoginSP, Pysaml2SP, SamlLogin, SpRejected, post_form

pytestmark = pytest.mark.postgres

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "rules"
CLIENT_IP = ("203.0.113.7", 5000)
SPS = [Pysaml2SP, OneLoginSP]

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS, "md": MD}
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"

SP_ENTITY = "https://sp.test/metadata"
ACS = "https://sp.test/acs"
AWS_ENTITY = "urn:amazon:webservices"  # AWS's own SAML entity id and ACS URL
AWS_ACS = "https://signin.aws.amazon.com/saml"
AWS_ROLE = "https://aws.amazon.com/SAML/Attributes/Role"
AWS_SESSION_NAME = "https://aws.amazon.com/SAML/Attributes/RoleSessionName"
AWS_SESSION_DURATION = "https://aws.amazon.com/SAML/Attributes/SessionDuration"
PROVIDER = "arn:aws:iam::123456789012:saml-provider/Bastion"
ROLE_ADMIN = f"arn:aws:iam::123456789012:role/Admin,{PROVIDER}"
ROLE_READONLY = f"arn:aws:iam::123456789012:role/ReadOnly,{PROVIDER}"
ROLE_BILLING = f"arn:aws:iam::123456789012:role/Billing,{PROVIDER}"
ROLE_STAFF = f"arn:aws:iam::123456789012:role/Staff,{PROVIDER}"
SHAREPOINT_ROLE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


# -- the tenant, through the Management API ---------------------------------------------------


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.py").read_text()


async def configure(bastion: Bastion, **values: str) -> None:
    for key, value in values.items():
        response = await bastion.management("PUT", f"/rules-configs/{key}", json={"value": value})
        assert response.status_code == 200, response.text


async def add_rule(bastion: Bastion, name: str, script: str, order: int) -> str:
    response = await bastion.management("POST", "/rules", json={"name": name, "script": script, "order": order, "enabled": True})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def install(bastion: Bastion, name: str, *, order: int = 10, **configuration: str) -> str:
    """A template stored from its file as a rule (Auth0's rule names have no `_`), with its configuration."""
    await configure(bastion, **configuration)
    return await add_rule(bastion, name.replace("_", "-"), template(name), order)


async def saml_app(bastion: Bastion, name: str, *, acs: str = ACS, **addon) -> tuple[dict, str]:
    """A SAML application (samlp addon) and Bastion's IdP metadata for it."""
    client = await bastion.create_client(name=name, callbacks=[acs], addons={"samlp": addon})
    metadata = await bastion.http.get(f"/samlp/metadata/{client['client_id']}")
    assert metadata.status_code == 200, metadata.text
    return client, metadata.text


def metadata_with_only(metadata: str, certificate_pem: str) -> str:
    """Bastion's metadata whose only signing certificate is `certificate_pem`."""
    root = etree.fromstring(metadata.encode())
    descriptors = root.findall(".//md:KeyDescriptor", NS)
    assert descriptors, "no KeyDescriptor in Bastion's metadata"
    for extra in descriptors[1:]:
        extra.getparent().remove(extra)
    (element,) = descriptors[0].findall(".//ds:X509Certificate", NS)
    element.text = pem_body(certificate_pem)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode()


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if "-----" not in line)


def metadata_certificates(metadata: str) -> list[str]:
    root = etree.fromstring(metadata.encode())
    return ["".join(e.text.split()) for e in root.findall(".//md:KeyDescriptor//ds:X509Certificate", NS)]


# -- the user's browser -----------------------------------------------------------------------


@dataclass
class Posted:
    """What the browser posted to the ACS URL, and the request it answers."""

    action: str
    fields: dict[str, str]
    request_id: str

    @property
    def xml(self) -> etree._Element:
        return etree.fromstring(base64.b64decode(self.fields["SAMLResponse"]))

    @property
    def status(self) -> str:
        return self.xml.find("samlp:Status/samlp:StatusCode", NS).get("Value")

    @property
    def status_message(self) -> str | None:
        element = self.xml.find("samlp:Status/samlp:StatusMessage", NS)
        return None if element is None else element.text

    def signature_certificates(self) -> list[str]:
        """The X509Certificate embedded in each signature of the Response (Response's or Assertion's)."""
        return ["".join(e.text.split()) for e in self.xml.findall(".//ds:Signature//ds:X509Certificate", NS)]

    def not_on_or_after(self) -> list[datetime]:
        """The assertion's expiry: Conditions' and SubjectConfirmationData's NotOnOrAfter."""
        assertion = self.xml.find("saml:Assertion", NS)
        found = [assertion.find("saml:Conditions", NS).get("NotOnOrAfter"),
                 assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS).get("NotOnOrAfter")]
        return [datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) for value in found]


def browser(bastion: Bastion) -> httpx.AsyncClient:
    """A fresh browser (no SSO session) on the same app."""
    transport = httpx.ASGITransport(app=bastion.http._transport.app, client=CLIENT_IP)
    return httpx.AsyncClient(transport=transport, base_url=ISSUER, follow_redirects=False)


def local_path(location: str) -> str | None:
    """A Location on Bastion itself, as a path and query; None for another site."""
    parts = urlsplit(location)
    if parts.netloc and f"{parts.scheme}://{parts.netloc}" != ISSUER:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def follow(http: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    """Follow Bastion's own redirects; stop at a page or at a redirect to another site."""
    for _ in range(10):
        if response.status_code not in (302, 303) or local_path(response.headers["location"]) is None:
            return response
        response = await http.get(local_path(response.headers["location"]))
    raise AssertionError("too many redirects")


async def start_login(http: httpx.AsyncClient, sp, *, email: str, relay_state: str) -> tuple[httpx.Response, str]:
    """The SP's AuthnRequest (HTTP-Redirect), Bastion's login page and the credentials; returns
    Bastion's last answer (not followed off-site) and the request ID."""
    url, request_id = sp.redirect_request(relay_state=relay_state)
    assert url.startswith(ISSUER + "/samlp/"), url
    response = await http.get(local_path(url))
    assert response.status_code == 302, response.text
    login_page = response.headers["location"]
    assert login_page.startswith("/u/login"), login_page
    page = await http.get(login_page)
    assert page.status_code == 200, page.text
    response = await http.post(login_page, data={
        "state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
        "username": email, "password": PASSWORD})
    return await follow(http, response), request_id


def posted(response: httpx.Response, request_id: str) -> Posted:
    """The auto-submitting HTTP-POST binding page Bastion answers a SAML login with."""
    assert response.status_code == 200, f"{response.status_code} {response.headers.get('location')} {response.text[:500]}"
    action, fields = post_form(response.text)
    assert "SAMLResponse" in fields, fields
    return Posted(action, fields, request_id)


async def saml_login(bastion: Bastion, sp, *, email: str = "alice@example.com", relay_state: str = "rs-1") -> Posted:
    async with browser(bastion) as http:
        response, request_id = await start_login(http, sp, email=email, relay_state=relay_state)
        result = posted(response, request_id)
    assert result.action == sp.acs_url
    assert result.fields.get("RelayState") == relay_state
    return result


def accepted(sp, result: Posted) -> SamlLogin:
    """The SP checks the response (a refusal fails the test with the library's reason)."""
    assert result.status == SUCCESS, (result.status, result.status_message)
    login = sp.accept(result.fields["SAMLResponse"], request_id=result.request_id)
    assert login.in_response_to == result.request_id
    return login


def refused(sp, result: Posted) -> str:
    """The SP refuses the response; returns the library's reason."""
    with pytest.raises(SpRejected) as refusal:
        sp.accept(result.fields["SAMLResponse"], request_id=result.request_id)
    return str(refusal.value)


async def execution_records(bastion: Bastion) -> list[str]:
    """The rules execution records of the logins so far (Management API), as JSON text."""
    response = await bastion.management("GET", "/logs", params={"per_page": 50})
    assert response.status_code == 200, response.text
    ids = {e["details"]["rules_execution_id"] for e in response.json() if (e.get("details") or {}).get("rules_execution_id")}
    records = []
    for execution_id in sorted(ids):
        record = await bastion.management("GET", f"/rules-executions/{execution_id}")
        assert record.status_code == 200, record.text
        records.append(record.text)
    return records


async def user_json(bastion: Bastion, user_id: str) -> dict:
    response = await bastion.management("GET", f"/users/{quote(user_id, safe='')}")
    assert response.status_code == 200, response.text
    return response.json()


# -- 1. saml_aws_role_mapping -----------------------------------------------------------------


@pytest.mark.parametrize("sp_class", SPS)
async def test_aws_role_mapping_sends_the_users_roles_session_name_and_duration_to_aws_only(bastion: Bastion, sp_class):
    alice = await bastion.create_user(name="Alice Example", app_metadata={
        "aws_roles": [ROLE_ADMIN, f" {ROLE_READONLY} ", "arn:aws:iam::123456789012:role/NoProvider", 42],
        "ad_groups": ["aws_billing", "aws_admins", "staff", "aws_unmapped"],
    })
    await bastion.create_user(email="mallory@example.com", app_metadata={"ad_groups": ["staff"], "aws_roles": ["garbage"]})
    aws, aws_metadata = await saml_app(bastion, "Amazon Web Services", acs=AWS_ACS, audience=AWS_ENTITY)
    _other, other_metadata = await saml_app(bastion, "Other SAML App")
    await install(
        bastion, "saml_aws_role_mapping", AWS_SAML_CLIENT_ID=aws["client_id"], AWS_SESSION_DURATION="7200",
        # staff maps to a role but lacks the prefix: not an AWS group; aws_admins repeats Admin (sent once)
        AWS_GROUP_ROLES=json.dumps({"aws_billing": ROLE_BILLING, "aws_admins": [ROLE_ADMIN], "staff": ROLE_STAFF}),
    )
    sp = sp_class(idp_metadata=aws_metadata, entity_id=AWS_ENTITY, acs_url=AWS_ACS)

    login = accepted(sp, await saml_login(bastion, sp))
    assert login.audience == [AWS_ENTITY]
    assert login.attributes[AWS_ROLE] == [ROLE_ADMIN, ROLE_READONLY, ROLE_BILLING]  # multi-valued, exactly the user's
    assert login.attributes[AWS_SESSION_NAME] == ["alice@example.com"]
    assert login.attributes[AWS_SESSION_DURATION] == ["7200"]
    assert login.name_id == alice["user_id"] and login.name_id_format == PERSISTENT
    assert login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]  # the application's other attributes stay
    records = await execution_records(bastion)
    assert any("skipped a malformed app_metadata.aws_roles entry" in r and "NoProvider" in r for r in records), records

    # A user without an AWS role: a SAML error Response carrying the rule's message, which the SP refuses.
    denied = await saml_login(bastion, sp, email="mallory@example.com", relay_state="rs-mallory")
    assert denied.status != SUCCESS
    assert denied.xml.find("samlp:Status/samlp:StatusCode/samlp:StatusCode", NS).get("Value") == REQUEST_DENIED
    assert denied.status_message == "You have no AWS role: ask your administrator for access to AWS."
    assert denied.xml.find("saml:Assertion", NS) is None
    assert denied.fields["RelayState"] == "rs-mallory"
    assert denied.xml.get("InResponseTo") == denied.request_id
    assert "You have no AWS role" in refused(sp, denied)  # refused for its status, not its signature

    # Another SAML application: no AWS attributes, no ad-hoc ones passed through.
    other_sp = sp_class(idp_metadata=other_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    other_login = accepted(other_sp, await saml_login(bastion, other_sp))
    assert not [name for name in other_login.attributes if "aws" in name.lower()], other_login.attributes
    assert other_login.name_id_format != PERSISTENT
    assert other_login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]


async def test_aws_role_mapping_default_duration_and_a_single_role(bastion: Bastion):
    await bastion.create_user(email="bob@example.com", name="Bob", app_metadata={"aws_roles": [ROLE_READONLY]})
    aws, metadata = await saml_app(bastion, "Amazon Web Services", acs=AWS_ACS, audience=AWS_ENTITY)
    await install(bastion, "saml_aws_role_mapping", AWS_SAML_CLIENT_ID=aws["client_id"])
    sp = OneLoginSP(idp_metadata=metadata, entity_id=AWS_ENTITY, acs_url=AWS_ACS)

    login = accepted(sp, await saml_login(bastion, sp, email="bob@example.com"))
    assert login.attributes[AWS_ROLE] == [ROLE_READONLY]
    assert login.attributes[AWS_SESSION_DURATION] == ["3600"]
    assert login.attributes[AWS_SESSION_NAME] == ["bob@example.com"]


@pytest.mark.parametrize("sp_class", SPS)
async def test_aws_role_mapping_on_an_idp_initiated_login_from_the_sso_session(bastion: Bastion, sp_class):
    """How the AWS console is usually reached: the user, already signed in to another
    application, opens Bastion's SSO URL for AWS (no AuthnRequest); the session answers it."""
    await bastion.create_user(app_metadata={"aws_roles": [ROLE_ADMIN, ROLE_BILLING]})
    aws, aws_metadata = await saml_app(bastion, "Amazon Web Services", acs=AWS_ACS, audience=AWS_ENTITY)
    _other, other_metadata = await saml_app(bastion, "Other SAML App")
    await install(bastion, "saml_aws_role_mapping", AWS_SAML_CLIENT_ID=aws["client_id"])
    other_sp = sp_class(idp_metadata=other_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    aws_sp = sp_class(idp_metadata=aws_metadata, entity_id=AWS_ENTITY, acs_url=AWS_ACS, allow_unsolicited=True)

    async with browser(bastion) as http:
        response, request_id = await start_login(http, other_sp, email="alice@example.com", relay_state="rs-other")
        assert AWS_ROLE not in accepted(other_sp, posted(response, request_id)).attributes
        response = await follow(http, await http.get(f"/samlp/{aws['client_id']}",
                                                     params={"RelayState": "https://console.aws.amazon.com/"}))
        result = posted(response, "")

    assert result.action == AWS_ACS and result.fields["RelayState"] == "https://console.aws.amazon.com/"
    assert result.status == SUCCESS and result.xml.get("InResponseTo") is None
    login = aws_sp.accept(result.fields["SAMLResponse"], request_id=None)
    assert login.audience == [AWS_ENTITY]
    assert login.attributes[AWS_ROLE] == [ROLE_ADMIN, ROLE_BILLING]
    assert login.attributes[AWS_SESSION_NAME] == ["alice@example.com"]


# -- 2. saml_sharepoint_groups ----------------------------------------------------------------


@pytest.mark.parametrize("sp_class", SPS)
async def test_sharepoint_groups_become_multi_valued_role_claims(bastion: Bastion, sp_class):
    alice = await bastion.create_user(name="Alice Example", app_metadata={"groups": ["Site Owners", "Finance", "Finance"]})
    bob = await bastion.create_user(email="bob@example.com", name="Bob", app_metadata={"groups": ["Not Used"]})
    _client, metadata = await saml_app(bastion, "SharePoint")
    # What a directory connection would provide: user.groups, which takes precedence over app_metadata.
    await add_rule(bastion, "directory-groups", (
        "def rule(user, context, api):\n"
        "    if user.email == 'bob@example.com':\n"
        "        user.groups = ['Directory Admins', 'Members']\n"), order=1)
    await install(bastion, "saml_sharepoint_groups", order=2, SHAREPOINT_CLIENT_NAME="SharePoint")
    sp = sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)

    login = accepted(sp, await saml_login(bastion, sp))
    assert login.attributes[SHAREPOINT_ROLE] == ["Site Owners", "Finance"]
    assert login.attributes[f"{CLAIMS}/nameidentifier"] == [alice["user_id"]]
    assert login.name_id == alice["user_id"]
    assert login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]
    assert login.attributes[f"{CLAIMS}/name"] == ["Alice Example"]
    assert login.attributes[f"{CLAIMS}/upn"] == ["alice@example.com"]  # no upn: the email (createUpnClaim)
    assert "http://schemas.xmlsoap.org/claims/Group" not in login.attributes  # the mappings were replaced

    login = accepted(sp, await saml_login(bastion, sp, email="bob@example.com"))
    assert login.attributes[SHAREPOINT_ROLE] == ["Directory Admins", "Members"]
    assert login.name_id == bob["user_id"]


async def test_sharepoint_matches_by_client_id_and_leaves_other_applications_alone(bastion: Bastion):
    await bastion.create_user(app_metadata={"groups": ["Site Owners"]})
    sharepoint, sharepoint_metadata = await saml_app(bastion, "Intranet")
    _other, other_metadata = await saml_app(bastion, "Other SAML App")
    await install(bastion, "saml_sharepoint_groups", SHAREPOINT_CLIENT_ID=sharepoint["client_id"],
                  SHAREPOINT_NAME_IDENTIFIER="upn")
    sp = Pysaml2SP(idp_metadata=sharepoint_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    login = accepted(sp, await saml_login(bastion, sp))
    assert login.attributes[SHAREPOINT_ROLE] == ["Site Owners"]
    assert login.name_id == "alice@example.com"  # SHAREPOINT_NAME_IDENTIFIER=upn, no upn: the email

    other_sp = Pysaml2SP(idp_metadata=other_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    other_login = accepted(other_sp, await saml_login(bastion, other_sp))
    assert SHAREPOINT_ROLE not in other_login.attributes


# -- 3. saml_customize_response ---------------------------------------------------------------


@pytest.mark.parametrize("sp_class", SPS)
async def test_customize_response_lifetime_upn_name_id_and_user_metadata_attribute(bastion: Bastion, sp_class):
    await bastion.create_user(app_metadata={"upn": "alice@corp.example.com"},
                              user_metadata={"preferences": {"color": "blue"}})
    bob = await bastion.create_user(email="bob@example.com")
    client, metadata = await saml_app(bastion, "Customized SAML App")
    _other, other_metadata = await saml_app(bastion, "Other SAML App")
    await install(
        bastion, "saml_customize_response", SAML_CUSTOMIZE_CLIENT_IDS=client["client_id"],
        SAML_METADATA_FIELD="preferences.color", SAML_METADATA_ATTRIBUTE="https://example.com/saml/color",
        SAML_METADATA_DEFAULT="red",
    )
    sp = sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)

    result = await saml_login(bastion, sp)
    login = accepted(sp, result)
    assert login.name_id == "alice@corp.example.com"
    assert login.attributes[f"{CLAIMS}/nameidentifier"] == ["alice@corp.example.com"]
    assert login.attributes[f"{CLAIMS}/upn"] == ["alice@corp.example.com"]
    assert login.attributes["https://example.com/saml/color"] == ["blue"]  # the user's own value
    expected = datetime.now(timezone.utc) + timedelta(seconds=36000)
    for moment in result.not_on_or_after():
        assert abs((moment - expected).total_seconds()) < 60, moment

    # No UPN: the application's NameID (the user_id); no color: the rule's default, visible in the same response.
    result = await saml_login(bastion, sp, email="bob@example.com")
    login = accepted(sp, result)
    assert login.name_id == bob["user_id"]
    assert login.attributes["https://example.com/saml/color"] == ["red"]
    assert (await user_json(bastion, bob["user_id"]))["user_metadata"] == {}  # set for the response, not saved

    # An application not listed keeps its settings: one hour, no color attribute.
    other_sp = sp_class(idp_metadata=other_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    result = await saml_login(bastion, other_sp)
    login = accepted(other_sp, result)
    assert "https://example.com/saml/color" not in login.attributes
    assert login.name_id.startswith("auth0|")
    expected = datetime.now(timezone.utc) + timedelta(seconds=3600)
    for moment in result.not_on_or_after():
        assert abs((moment - expected).total_seconds()) < 60, moment


async def test_customize_response_upn_set_by_an_earlier_rule_and_default_attribute_name(bastion: Bastion):
    await bastion.create_user(user_metadata={"favorite_color": "green"})
    _client, metadata = await saml_app(bastion, "Customized SAML App", lifetimeInSeconds=600)
    await add_rule(bastion, "directory-upn", "def rule(user, context, api):\n    user.upn = 'alice@ad.example.com'\n", order=1)
    await install(bastion, "saml_customize_response", order=2, SAML_LIFETIME_SECONDS="7200",
                  SAML_METADATA_FIELD="favorite_color")
    sp = OneLoginSP(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)
    result = await saml_login(bastion, sp)
    login = accepted(sp, result)
    assert login.name_id == "alice@ad.example.com"
    assert login.attributes[f"{CLAIMS}/favorite_color"] == ["green"]
    expected = datetime.now(timezone.utc) + timedelta(seconds=7200)  # the rule overrides the addon's 600
    for moment in result.not_on_or_after():
        assert abs((moment - expected).total_seconds()) < 60, moment


# -- 4. saml_signing_key ----------------------------------------------------------------------


def key_pair(common_name: str) -> tuple[str, str]:
    """A new RSA key and its self-signed certificate, PEM: (certificate, private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.mark.parametrize("sp_class", SPS)
async def test_signing_key_signs_one_applications_responses_with_the_configured_key(bastion: Bastion, sp_class):
    await bastion.create_user()
    cert_pem, key_pem = key_pair("sp-specific.example.com")
    client, metadata = await saml_app(bastion, "Own Key SAML App")
    _other, other_metadata = await saml_app(bastion, "Other SAML App")
    (bastion_certificate,) = metadata_certificates(metadata)
    await install(
        bastion, "saml_signing_key", SAML_SIGNING_CLIENT_ID=client["client_id"],
        SAML_SIGNING_CERT=cert_pem.strip().replace("\n", "\\n"),  # Auth0's one-line, \n-escaped form
        SAML_SIGNING_KEY=key_pem,
    )
    trusts_new_key = sp_class(idp_metadata=metadata_with_only(metadata, cert_pem), entity_id=SP_ENTITY, acs_url=ACS)
    trusts_bastion = sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)

    result = await saml_login(bastion, trusts_new_key)
    assert result.signature_certificates() == [pem_body(cert_pem)]
    login = accepted(trusts_new_key, result)
    assert login.attributes[f"{CLAIMS}/emailaddress"] == ["alice@example.com"]
    assert "signature" in refused(trusts_bastion, result).lower()

    # Another application: still Bastion's key.
    trusts_bastion = sp_class(idp_metadata=other_metadata, entity_id=SP_ENTITY, acs_url=ACS)
    trusts_new_key = sp_class(idp_metadata=metadata_with_only(other_metadata, cert_pem), entity_id=SP_ENTITY, acs_url=ACS)
    result = await saml_login(bastion, trusts_bastion)
    assert result.signature_certificates() == [bastion_certificate]
    accepted(trusts_bastion, result)
    assert "signature" in refused(trusts_new_key, result).lower()


async def test_signing_key_with_a_mismatched_pair_fails_closed_and_the_key_stays_out_of_records(bastion: Bastion):
    await bastion.create_user()
    cert_pem, key_pem = key_pair("sp-specific.example.com")
    _, other_key_pem = key_pair("another.example.com")
    client, metadata = await saml_app(bastion, "Own Key SAML App", signResponse=True)
    await install(bastion, "saml_signing_key", SAML_SIGNING_CLIENT_ID=client["client_id"],
                  SAML_SIGNING_CERT=cert_pem, SAML_SIGNING_KEY=key_pem)
    sp = Pysaml2SP(idp_metadata=metadata_with_only(metadata, cert_pem), entity_id=SP_ENTITY, acs_url=ACS,
                   want_response_signed=True, want_assertions_signed=False)

    result = await saml_login(bastion, sp)  # signResponse: the Response itself is signed with the rule's key
    assert result.xml.find("ds:Signature", NS) is not None
    assert result.signature_certificates() == [pem_body(cert_pem)]
    accepted(sp, result)

    # The key does not match the certificate: no response signed with an unexpected key.
    await configure(bastion, SAML_SIGNING_KEY=other_key_pem)
    result = await saml_login(bastion, sp, relay_state="rs-2")
    assert result.status != SUCCESS
    assert result.status_message == "The response could not be signed."
    assert result.xml.find("saml:Assertion", NS) is None
    # Error Responses are signed with Bastion's key (the rule's pair is unusable here), so an SP
    # that trusts only the rule's certificate refuses it already for its signature.
    assert result.signature_certificates() == metadata_certificates(metadata)
    assert "signature" in refused(sp, result).lower()

    # The private keys never appear in an execution record.
    records = await execution_records(bastion)
    assert len(records) >= 2
    for record in records:
        assert "PRIVATE KEY" not in record and pem_body(key_pem)[:64] not in record


# -- a SAML login pauses for a rule's redirect and resumes at /continue -----------------------


PAUSING_RULE = '''
async def rule(user, context, api):
    if context.protocol == "samlp":
        context.redirect = {"url": "https://consent.test/page?lang=en"}
        return
    if context.protocol != "redirect-callback" or context.original_protocol != "samlp":
        raise UnauthorizedError("unexpected protocol " + str(context.protocol))
    if context.request.query.get("confirm") != "yes":
        raise UnauthorizedError("Consent declined.")
    user.consent_answer = "accepted after " + context.protocol
    mappings = dict(context.saml_configuration.get("mappings") or {})
    mappings["https://example.com/consent"] = "consent_answer"
    context.saml_configuration["mappings"] = mappings
'''


@pytest.mark.parametrize("sp_class", SPS)
async def test_a_saml_login_pauses_for_a_rules_redirect_and_resumes_at_continue(bastion: Bastion, sp_class):
    await bastion.create_user()
    _client, metadata = await saml_app(bastion, "Consent SAML App")
    await add_rule(bastion, "consent-redirect", PAUSING_RULE, order=1)
    sp = sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)

    async with browser(bastion) as http:
        response, request_id = await start_login(http, sp, email="alice@example.com", relay_state="back-to-/reports")
        assert response.status_code in (302, 303), response.text
        page = urlsplit(response.headers["location"])
        assert f"{page.scheme}://{page.netloc}{page.path}" == "https://consent.test/page"
        query = httpx.QueryParams(page.query)
        assert query["lang"] == "en" and query["state"]  # the rule's own parameter kept, Bastion's state added
        # The consent page sends the browser back, with its answer.
        response = await follow(http, await http.get("/continue", params={"state": query["state"], "confirm": "yes"}))
        result = posted(response, request_id)

    assert result.action == ACS
    assert result.fields["RelayState"] == "back-to-/reports"
    login = accepted(sp, result)
    assert login.in_response_to == request_id
    assert login.attributes["https://example.com/consent"] == ["accepted after redirect-callback"]
    assert login.name_id.startswith("auth0|")


async def test_a_paused_saml_login_is_signed_with_a_rules_key_after_it_resumes(bastion: Bastion):
    """The rules' saml_configuration (here the signing key, sealed while the login waits) is the
    one of the run at /continue: the response is signed with the saml_signing_key template's key."""
    await bastion.create_user()
    cert_pem, key_pem = key_pair("sp-specific.example.com")
    client, metadata = await saml_app(bastion, "Consent SAML App")
    await add_rule(bastion, "consent-redirect", PAUSING_RULE, order=1)
    await install(bastion, "saml_signing_key", order=2, SAML_SIGNING_CLIENT_ID=client["client_id"],
                  SAML_SIGNING_CERT=cert_pem, SAML_SIGNING_KEY=key_pem)
    sp = Pysaml2SP(idp_metadata=metadata_with_only(metadata, cert_pem), entity_id=SP_ENTITY, acs_url=ACS)

    async with browser(bastion) as http:
        response, request_id = await start_login(http, sp, email="alice@example.com", relay_state="rs-signed")
        state = httpx.QueryParams(urlsplit(response.headers["location"]).query)["state"]
        response = await follow(http, await http.get("/continue", params={"state": state, "confirm": "yes"}))
        result = posted(response, request_id)

    assert result.fields["RelayState"] == "rs-signed"
    assert result.signature_certificates() == [pem_body(cert_pem)]
    login = accepted(sp, result)
    assert login.attributes["https://example.com/consent"] == ["accepted after redirect-callback"]


async def test_a_paused_saml_login_declined_on_the_second_run_gets_a_saml_error_response(bastion: Bastion):
    await bastion.create_user()
    _client, metadata = await saml_app(bastion, "Consent SAML App")
    await add_rule(bastion, "consent-redirect", PAUSING_RULE, order=1)
    sp = OneLoginSP(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)

    async with browser(bastion) as http:
        response, request_id = await start_login(http, sp, email="alice@example.com", relay_state="rs-declined")
        state = httpx.QueryParams(urlsplit(response.headers["location"]).query)["state"]
        response = await follow(http, await http.get("/continue", params={"state": state, "confirm": "no"}))
        result = posted(response, request_id)

    assert result.fields["RelayState"] == "rs-declined"
    assert result.status != SUCCESS and result.status_message == "Consent declined."
    assert result.xml.get("InResponseTo") == request_id
    assert "Consent declined." in refused(sp, result)
