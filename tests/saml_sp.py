"""Two real SAML 2.0 service providers for end-to-end tests of Bastion's SAML IdP.

`Pysaml2SP` wraps pysaml2's `Saml2Client`; `OneLoginSP` wraps python3-saml's
`OneLogin_Saml2_Auth`. Both are configured in memory from the IdP's metadata XML and
expose the same small surface: build an AuthnRequest (HTTP-Redirect or HTTP-POST
binding), `accept` a base64 `SAMLResponse` received by HTTP-POST (the libraries do all
the checking: signature, audience, destination/recipient, time, InResponseTo), build a
LogoutRequest, and print the SP's own metadata. A refused response raises `SpRejected`.

`inflate_redirect` and `post_form` decode the two HTTP bindings an IdP answers with.
"""

from __future__ import annotations

import base64
import logging
import shutil
import tempfile
import weakref
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import lxml.html
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request
from onelogin.saml2.constants import OneLogin_Saml2_Constants as OL
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NameID
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

XMLSEC1 = "/usr/bin/xmlsec1"


@dataclass
class SamlLogin:
    """What a service provider extracted from a response it accepted."""

    name_id: str
    name_id_format: str | None
    attributes: dict[str, list[str]]  # attribute Name -> values, as sent (no friendly-name mapping)
    session_index: str | None
    in_response_to: str | None
    audience: list[str] | None


class SpRejected(Exception):
    """The SP library refused a response; the message is the library's reason."""


def inflate_redirect(url: str) -> tuple[bytes, dict[str, str]]:
    """Decode an HTTP-Redirect binding URL: (inflated SAMLRequest/SAMLResponse XML, query parameters)."""
    params = dict(parse_qsl(urlsplit(url).query))
    message = params.get("SAMLRequest") or params["SAMLResponse"]
    return zlib.decompress(base64.b64decode(message), -15), params


def post_form(html: str) -> tuple[str, dict[str, str]]:
    """Decode an HTTP-POST binding page (an auto-submitting form): (form action, {field: value})."""
    form = lxml.html.fromstring(html).forms[0]
    return form.action, {name: value for name, value in form.form_values()}


@contextmanager
def _logged_errors(logger_name: str):
    """Collect the ERROR records a library logs meanwhile (pysaml2 logs some refusals and returns None)."""
    records: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


class Pysaml2SP:
    """A pysaml2 `Saml2Client` SP, configured in memory (IdP metadata inline).

    pysaml2 signs and verifies with the xmlsec1 binary, which reads the SP key and
    cert from files: they live in a temporary directory removed by `close()` (or
    when the object is garbage-collected).
    """

    def __init__(self, *, idp_metadata: str, entity_id: str, acs_url: str, sls_url: str | None = None,
                 sign_requests: bool = False, key_pem: str | None = None, cert_pem: str | None = None,
                 want_response_signed: bool = False, want_assertions_signed: bool = True,
                 allow_unsolicited: bool = False):
        self.entity_id, self.acs_url, self.sign_requests = entity_id, acs_url, sign_requests
        endpoints = {"assertion_consumer_service": [(acs_url, BINDING_HTTP_POST)]}
        if sls_url:
            endpoints["single_logout_service"] = [(sls_url, BINDING_HTTP_REDIRECT)]
        config = {
            "entityid": entity_id,
            "xmlsec_binary": XMLSEC1,
            "metadata": {"inline": [idp_metadata]},
            "allow_unknown_attributes": True,
            "service": {"sp": {  # per-service settings; the algorithms default to SHA-1 otherwise
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "endpoints": endpoints,
                "allow_unsolicited": allow_unsolicited,
                "authn_requests_signed": sign_requests,
                "logout_requests_signed": sign_requests,
                "want_response_signed": want_response_signed,
                "want_assertions_signed": want_assertions_signed,
            }},
        }
        tmp = tempfile.mkdtemp(prefix="pysaml2-sp-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
        for name, pem in (("key_file", key_pem), ("cert_file", cert_pem)):
            if pem:
                path = Path(tmp, name + ".pem")
                path.write_text(pem)
                config[name] = str(path)
        conf = SPConfig()
        conf.load(config)
        self.client = Saml2Client(config=conf)
        (self.idp_entity_id,) = self.client.metadata.identity_providers()

    def close(self) -> None:
        """Remove the temporary key/cert files."""
        self._cleanup()

    def __enter__(self) -> Pysaml2SP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def redirect_request(self, *, relay_state: str | None = None, name_id_format: str | None = None) -> tuple[str, str]:
        """An AuthnRequest by HTTP-Redirect binding: (url to GET, request ID)."""
        request_id, info = self.client.prepare_for_authenticate(
            entityid=self.idp_entity_id, relay_state=relay_state or "", binding=BINDING_HTTP_REDIRECT,
            nameid_format=name_id_format, sign=self.sign_requests)
        return dict(info["headers"])["Location"], request_id

    def post_request(self, *, relay_state: str | None = None) -> tuple[str, dict[str, str], str]:
        """An AuthnRequest by HTTP-POST binding (signed inside the XML if sign_requests): (url, form fields, request ID)."""
        request_id, info = self.client.prepare_for_authenticate(
            entityid=self.idp_entity_id, relay_state=relay_state or "", binding=BINDING_HTTP_POST,
            sign=self.sign_requests)
        _, fields = post_form(info["data"])
        return info["url"], fields, request_id

    def accept(self, saml_response_b64: str, *, request_id: str | None = None) -> SamlLogin:
        """Parse and verify a base64 SAMLResponse (HTTP-POST binding) as pysaml2 does.

        request_id=None means IdP-initiated: pysaml2 then needs allow_unsolicited=True.
        """
        outstanding = {request_id: "/"} if request_id else {}
        with _logged_errors("saml2") as errors:
            try:
                response = self.client.parse_authn_request_response(
                    saml_response_b64, BINDING_HTTP_POST, outstanding=outstanding)
            except Exception as exc:  # pysaml2 raises many types, including bare Exception
                raise SpRejected(f"pysaml2: {type(exc).__name__}: {exc}") from exc
        if response is None or response.assertion is None:
            raise SpRejected(f"pysaml2 returned no response: {'; '.join(errors) or 'no reason logged'}")
        assertion = response.assertion
        attributes: dict[str, list[str]] = {}
        for statement in assertion.attribute_statement:
            for attribute in statement.attribute:
                attributes.setdefault(attribute.name, []).extend(v.text or "" for v in attribute.attribute_value)
        conditions = assertion.conditions
        return SamlLogin(
            name_id=response.name_id.text,
            name_id_format=response.name_id.format,
            attributes=attributes,
            session_index=next((s.session_index for s in assertion.authn_statement), None),
            in_response_to=response.in_response_to,
            audience=[a.text for r in conditions.audience_restriction for a in r.audience] if conditions else None,
        )

    def logout_request(self, *, name_id: str, session_index: str | None = None,
                       name_id_format: str | None = None) -> tuple[str, str]:
        """A LogoutRequest by HTTP-Redirect binding: (url to GET, request ID)."""
        _, destination = self.client.pick_binding(
            "single_logout_service", [BINDING_HTTP_REDIRECT], "idpsso", entity_id=self.idp_entity_id)
        request_id, request = self.client.create_logout_request(
            destination, self.idp_entity_id, name_id=NameID(text=name_id, format=name_id_format),
            session_indexes=[session_index] if session_index else None, sign=False)
        info = self.client.apply_binding(BINDING_HTTP_REDIRECT, str(request), destination, sign=self.sign_requests)
        return dict(info["headers"])["Location"], request_id

    def metadata(self) -> str:
        """The SP's own metadata XML."""
        return create_metadata_string(None, config=self.client.config).decode()


class OneLoginSP:
    """A python3-saml (`onelogin.saml2`) SP: settings built from the IdP metadata, strict mode.

    python3-saml reads the "current URL" from a request-data dict; `accept` fakes one
    for a POST to acs_url, since the library compares it with the response's
    Destination and the SubjectConfirmationData Recipient. It has no notion of
    refusing unsolicited responses: with request_id=None any InResponseTo passes, so
    `allow_unsolicited` is accepted for symmetry and ignored.
    """

    def __init__(self, *, idp_metadata: str, entity_id: str, acs_url: str, sls_url: str | None = None,
                 sign_requests: bool = False, key_pem: str | None = None, cert_pem: str | None = None,
                 want_response_signed: bool = False, want_assertions_signed: bool = True,
                 allow_unsolicited: bool = False):
        self.entity_id, self.acs_url, self.sign_requests = entity_id, acs_url, sign_requests
        self._idp = OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata)
        self._post_sso_url = OneLogin_Saml2_IdPMetadataParser.parse(
            idp_metadata, required_sso_binding=OL.BINDING_HTTP_POST)["idp"]["singleSignOnService"]["url"]
        sp = {
            "entityId": entity_id,
            "assertionConsumerService": {"url": acs_url, "binding": OL.BINDING_HTTP_POST},
            "x509cert": cert_pem or "",
            "privateKey": key_pem or "",
        }
        if sls_url:
            sp["singleLogoutService"] = {"url": sls_url, "binding": OL.BINDING_HTTP_REDIRECT}
        self._settings = {
            "strict": True,
            "debug": False,
            "sp": sp,
            "security": {
                "authnRequestsSigned": sign_requests,
                "logoutRequestSigned": sign_requests,
                "wantAssertionsSigned": want_assertions_signed,
                "wantMessagesSigned": want_response_signed,
                "signatureAlgorithm": OL.RSA_SHA256,
                "digestAlgorithm": OL.SHA256,
            },
        }

    def settings(self, name_id_format: str | None = None) -> OneLogin_Saml2_Settings:
        """python3-saml settings: ours merged with the IdP metadata (which also sets the SP's NameIDFormat)."""
        merged = OneLogin_Saml2_IdPMetadataParser.merge_settings(self._settings, self._idp)
        if name_id_format:
            merged["sp"]["NameIDFormat"] = name_id_format
        return OneLogin_Saml2_Settings(merged)

    def _auth(self, post_data: dict[str, str] | None = None, name_id_format: str | None = None) -> OneLogin_Saml2_Auth:
        """An Auth object for a fake request to acs_url (so the library's "current URL" is acs_url)."""
        url = urlsplit(self.acs_url)
        request_data = {
            "https": "on" if url.scheme == "https" else "off",
            "http_host": url.netloc,  # with the port: server_port is deprecated in python3-saml 1.16
            "script_name": url.path,
            "get_data": {},
            "post_data": post_data or {},
        }
        return OneLogin_Saml2_Auth(request_data, self.settings(name_id_format))

    def redirect_request(self, *, relay_state: str | None = None, name_id_format: str | None = None) -> tuple[str, str]:
        """An AuthnRequest by HTTP-Redirect binding: (url to GET, request ID).

        Without relay_state python3-saml sends the current URL (acs_url) as RelayState.
        """
        auth = self._auth(name_id_format=name_id_format)
        url = auth.login(return_to=relay_state)
        return url, auth.get_last_request_id()

    def post_request(self, *, relay_state: str | None = None) -> tuple[str, dict[str, str], str]:
        """An AuthnRequest by HTTP-POST binding (python3-saml has no helper: its AuthnRequest, enveloped-signed if asked)."""
        settings = self.settings()
        request = OneLogin_Saml2_Authn_Request(settings)
        xml = request.get_xml()
        if self.sign_requests:
            xml = OneLogin_Saml2_Utils.add_sign(
                xml, settings.get_sp_key(), settings.get_sp_cert(), sign_algorithm=OL.RSA_SHA256,
                digest_algorithm=OL.SHA256)
        fields = {"SAMLRequest": OneLogin_Saml2_Utils.b64encode(xml)}
        if relay_state is not None:
            fields["RelayState"] = relay_state
        return self._post_sso_url, fields, request.get_id()

    def accept(self, saml_response_b64: str, *, request_id: str | None = None) -> SamlLogin:
        """Parse and verify a base64 SAMLResponse posted to acs_url, as python3-saml does (strict)."""
        auth = self._auth(post_data={"SAMLResponse": saml_response_b64})
        try:
            auth.process_response(request_id=request_id)
        except Exception as exc:
            raise SpRejected(f"python3-saml: {type(exc).__name__}: {exc}") from exc
        if auth.get_errors():
            raise SpRejected(f"python3-saml: {auth.get_errors()}: {auth.get_last_error_reason()}")
        response = OneLogin_Saml2_Response(auth.get_settings(), saml_response_b64)
        return SamlLogin(
            name_id=auth.get_nameid(),
            name_id_format=auth.get_nameid_format(),
            attributes=auth.get_attributes(),
            session_index=auth.get_session_index(),
            in_response_to=auth.get_last_response_in_response_to(),
            audience=response.get_audiences(),
        )

    def logout_request(self, *, name_id: str, session_index: str | None = None,
                       name_id_format: str | None = None) -> tuple[str, str]:
        """A LogoutRequest by HTTP-Redirect binding: (url to GET, request ID)."""
        auth = self._auth()
        url = auth.logout(name_id=name_id, session_index=session_index, name_id_format=name_id_format)
        return url, auth.get_last_request_id()

    def metadata(self) -> str:
        """The SP's own metadata XML."""
        metadata = self.settings().get_sp_metadata()
        return metadata.decode() if isinstance(metadata, bytes) else metadata
