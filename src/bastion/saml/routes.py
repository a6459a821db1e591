"""The SAML 2.0 identity provider's HTTP edge (docs/saml.md).

    GET      /samlp/metadata/{client_id}   IdP metadata with the signing certificates
    GET|POST /samlp/{client_id}            SP-initiated SSO (AuthnRequest by HTTP-Redirect or
                                           HTTP-POST) and IdP-initiated SSO (no AuthnRequest)
    GET|POST /samlp/{client_id}/logout     single logout (LogoutRequest / LogoutResponse)

A SAML login is an ordinary login transaction (protocol `samlp`): the same universal login,
MFA, rule redirects and SSO session as OIDC. `SamlResponder` turns its end into a signed
Response, delivered to the validated ACS URL by an auto-submitting HTTP-POST form. Problems
found before the ACS URL is trusted get a readable page; after, a SAML error Response.
"""

from __future__ import annotations

import base64
import logging
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bastion.errors import OAuthError, PageError
from bastion.events import EventType, record_event
from bastion.login.flow import LoginFlow
from bastion.login.rules_step import SAML_RULE_KEY_PURPOSE
from bastion.login.sso import SESSION_COOKIE, end_sso_session
from bastion.login.transaction import AuthorizationRequest, LoginDenial, LoginResult
from bastion.pages import Pages
from bastion.saml.configuration import (
    HTTP_POST,
    HTTP_REDIRECT,
    effective_configuration,
    rule_overrides,
)
from bastion.saml.keys import KeyPairError, SamlKey, key_pair_from_pem
from bastion.saml.metadata import idp_metadata
from bastion.saml.requests import (
    AuthnRequest,
    LogoutMessage,
    SamlRequestError,
    check_issue_instant,
    check_post_signature,
    check_redirect_signature,
    decode_message,
    read_authn_request,
    read_logout_message,
)
from bastion.saml.responses import (
    NO_PASSIVE,
    REQUEST_DENIED,
    RESPONDER,
    SUCCESS,
    Subject,
    error_response,
    login_response,
    logout_response,
    serialize,
)
from bastion.security.handles import digest
from bastion.services import Services
from bastion.storage import one_time_codes
from bastion.storage.records import Client
from bastion.web import clean_params, client_ip, read_form

__all__ = ["SamlRoutes", "SamlResponder", "idp_entity_id"]

log = logging.getLogger("bastion.saml")

SAML_PROTOCOL = "samlp"
_REPLAY_PURPOSE = "saml-request"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


def idp_entity_id(services: Services) -> str:
    """Bastion's SAML entity id, Auth0's form: `urn:` + the host name (an addon's `issuer` overrides it)."""
    return f"urn:{urlsplit(services.settings.issuer).hostname}"


def _bad_request(message: str) -> PageError:
    return PageError("Invalid SAML request", message)


def _encoded(xml: bytes) -> str:
    return base64.b64encode(xml).decode()


class SamlResponder:
    """Turns a completed SAML login into a signed Response (or an error Response) for the ACS URL."""

    def __init__(self, pages: Pages):
        self._pages = pages

    async def __call__(self, services: Services, request: AuthorizationRequest, outcome: LoginResult | LoginDenial) -> Response:
        assert request.saml is not None
        start = request.saml["configuration"]
        in_response_to = request.saml.get("request_id")
        if isinstance(outcome, LoginDenial):
            return await self.deny(services, request, outcome)
        final = outcome.saml or {}
        config, warnings = rule_overrides(start, final.get("configuration", start))
        for warning in warnings:
            log.warning("client %s: %s", request.client_id, warning)
        try:
            key = await self._signing_key(services, config)
        except KeyPairError as problem:
            log.warning("client %s: a rule's saml_configuration cert/key cannot sign: %s", request.client_id, problem)
            return await self.deny(services, request, LoginDenial("access_denied", "The response could not be signed."))
        subject = Subject(
            user=final.get("user") or {"user_id": outcome.user_id},
            session_index=outcome.sid or "",
            auth_instant=datetime.fromtimestamp(outcome.auth_time, tz=timezone.utc),
        )
        response = login_response(issuer=config["issuer"], subject=subject, config=config, in_response_to=in_response_to, key=key)
        relay_state = config.get("relay_state") or request.state
        return self._post(request.redirect_uri, serialize(response), relay_state)

    async def deny(self, services: Services, request: AuthorizationRequest, denial: LoginDenial) -> Response:
        """A signed Response with a non-Success status: `NoPassive` when the login needed the
        user and could not ask, `RequestDenied` otherwise (a rule's denial, a declined consent)."""
        assert request.saml is not None
        config = request.saml["configuration"]
        passive = denial.error in ("login_required", "interaction_required")
        response = error_response(
            issuer=config["issuer"], destination=config.get("destination"), in_response_to=request.saml.get("request_id"),
            status=RESPONDER, sub_status=NO_PASSIVE if passive else REQUEST_DENIED, message=denial.description,
            key=await services.saml_keys.current(), config=config,
        )
        return self._post(request.redirect_uri, serialize(response), request.state)

    async def _signing_key(self, services: Services, config: dict[str, Any]) -> SamlKey:
        cert, sealed_key = config.get("cert"), config.get("key")
        if cert or sealed_key:
            if not (isinstance(cert, str) and isinstance(sealed_key, str)):
                raise KeyPairError("set both cert and key")
            key_pem = services.sealer.open(sealed_key, purpose=SAML_RULE_KEY_PURPOSE).decode()
            return key_pair_from_pem(cert, key_pem)
        return await services.saml_keys.current()

    def _post(self, acs_url: str, xml: bytes, relay_state: str | None) -> Response:
        fields = [("SAMLResponse", _encoded(xml))]
        if relay_state:
            fields.append(("RelayState", relay_state))
        return self._pages.form_post(acs_url, fields)


class SamlRoutes:
    def __init__(self, services: Services, pages: Pages):
        self.services = services
        self.pages = pages
        self.responder = SamlResponder(pages)
        self.flow: LoginFlow | None = None  # set by create_app

    def routes(self) -> list[Route]:
        return [
            Route("/samlp/metadata/{client_id}", self.metadata, methods=["GET"]),
            Route("/samlp/{client_id}/logout", self.logout, methods=["GET", "POST"]),
            Route("/samlp/{client_id}", self.sso, methods=["GET", "POST"]),
        ]

    def _url(self, path: str) -> str:
        return self.services.settings.issuer + path

    async def _saml_client(self, client_id: str) -> tuple[Client, dict[str, Any]]:
        client = await self.services.tenant.client(client_id)
        addon = (client.addons or {}).get("samlp") if client else None
        if client is None or not isinstance(addon, dict):
            raise PageError("Unknown application", "There is no SAML application with this client ID.", 404)
        return client, addon

    async def _params(self, request: Request) -> dict[str, str]:
        try:
            if request.method == "GET":
                return clean_params(request.query_params.multi_items())
            return await read_form(request)
        except OAuthError as problem:
            raise _bad_request(problem.description) from None

    # -- metadata -------------------------------------------------------------

    async def metadata(self, request: Request) -> Response:
        client_id = request.path_params["client_id"]
        _client, addon = await self._saml_client(client_id)
        xml = idp_metadata(
            entity_id=addon.get("issuer") or idp_entity_id(self.services),
            sso_url=self._url(f"/samlp/{client_id}"),
            slo_url=self._url(f"/samlp/{client_id}/logout"),
            keys=await self.services.saml_keys.published(),
            want_signed_requests=bool(addon.get("signingCert")),
        )
        return Response(xml, media_type="application/samlmetadata+xml", headers={"Cache-Control": "max-age=300"})

    # -- single sign-on -------------------------------------------------------

    async def sso(self, request: Request) -> Response:
        client_id = request.path_params["client_id"]
        client, addon = await self._saml_client(client_id)
        params = await self._params(request)
        authn = None
        if "SAMLRequest" in params:
            authn = await self._authn_request(request, client, addon, params)
        elif request.method == "POST":
            raise _bad_request("The form carries no SAMLRequest.")
        acs_url = self._acs_url(client, authn)
        configuration = effective_configuration(addon, acs_url=acs_url, sp_entity_id=authn.issuer if authn else None)
        configuration["issuer"] = configuration.get("issuer") or idp_entity_id(self.services)
        if not configuration.get("audience"):  # IdP-initiated, no audience configured: the ACS URL stands in
            configuration["audience"] = acs_url
        # ForceAuthn needs a fresh login; with IsPassive too it cannot have one: NoPassive (SAML Core §3.4.1).
        prompt = (["login"] if authn and authn.force_authn else []) + (["none"] if authn and authn.is_passive else [])
        authorization = AuthorizationRequest(
            client_id=client.client_id, redirect_uri=acs_url, response_mode="form_post", scopes=[],
            state=params.get("RelayState"), prompt=prompt, connection=params.get("connection"), protocol=SAML_PROTOCOL,
            query={k: v for k, v in params.items() if k not in ("Signature", "SigAlg")},
            saml={
                "request_id": authn.id if authn else None,
                "sp_entity_id": authn.issuer if authn else None,
                "name_id_format": authn.name_id_format if authn else None,
                "configuration": configuration,
            },
        )
        assert self.flow is not None

        async def no_passive() -> Response:
            return await self.responder.deny(self.services, authorization, LoginDenial("login_required", "Login required"))

        return await self.flow.start(request, authorization, passive_failure=no_passive)

    async def _authn_request(self, request: Request, client: Client, addon: dict[str, Any], params: dict[str, str]) -> AuthnRequest:
        redirect_binding = request.method == "GET"
        try:
            xml = decode_message(params["SAMLRequest"], deflated=redirect_binding)
            signed_root = None
            certificate = addon.get("signingCert")
            if certificate:
                if redirect_binding:
                    check_redirect_signature(request.url.query, certificate)
                else:
                    signed_root = check_post_signature(xml, certificate)
            authn = read_authn_request(xml, root=signed_root)
            check_issue_instant(authn.issue_instant, skew=self.services.settings.saml_clock_skew, max_age=self.services.settings.saml_request_max_age)
        except SamlRequestError as problem:
            raise _bad_request(str(problem)) from None
        if authn.destination and authn.destination != self._url(f"/samlp/{client.client_id}"):
            raise _bad_request(f"The request's Destination {authn.destination} is not this endpoint.")
        if authn.protocol_binding and authn.protocol_binding != HTTP_POST:
            raise _bad_request("Bastion delivers SAML responses by the HTTP-POST binding only; the request asked for another.")
        await self._remember_request_id(client.client_id, authn)
        return authn

    async def _remember_request_id(self, client_id: str, message: AuthnRequest | LogoutMessage) -> None:
        """Each request ID works once per application: a replayed AuthnRequest is refused."""
        settings = self.services.settings
        try:
            async with self.services.database.transaction() as session:
                await one_time_codes.insert_code(
                    session, id=digest(f"{_REPLAY_PURPOSE}:{client_id}:{message.id}"), purpose=_REPLAY_PURPOSE,
                    connection=None, recipient=None, client_id=client_id, code_digest=digest(message.id), data={},
                    expires_at=datetime.now(timezone.utc) + timedelta(seconds=settings.saml_request_max_age + 2 * settings.saml_clock_skew),
                )
        except IntegrityError:
            raise _bad_request("This SAML request was already used. Start again from the application.") from None

    def _acs_url(self, client: Client, authn: AuthnRequest | None) -> str:
        """The request's AssertionConsumerServiceURL, only when it is one of the application's
        callback URLs (exact match); else the first callback URL."""
        if authn and authn.acs_url:
            if authn.acs_url not in client.callbacks:
                raise _bad_request(
                    f"The AssertionConsumerServiceURL {authn.acs_url} is not one of this application's allowed callback URLs."
                )
            return authn.acs_url
        if not client.callbacks:
            raise _bad_request("This application has no callback URL to send the SAML response to.")
        return client.callbacks[0]

    # -- single logout --------------------------------------------------------

    async def logout(self, request: Request) -> Response:
        """A service provider's LogoutRequest ends the SSO session and is answered with a signed
        LogoutResponse at the application's logout URL; a LogoutResponse (or nothing) ends the
        session and shows the logged-out page."""
        client_id = request.path_params["client_id"]
        client, addon = await self._saml_client(client_id)
        params = await self._params(request)
        message = None
        encoded = params.get("SAMLRequest") or params.get("SAMLResponse")
        if encoded:
            message = self._logout_message(request, addon, params, encoded)
            if message.kind == "LogoutRequest":
                await self._remember_request_id(client_id, message)
        ended = await end_sso_session(self.services, request)
        if ended is not None:
            async with self.services.database.transaction() as session:
                await record_event(
                    session, EventType.SUCCESS_LOGOUT, description="User successfully logged out", user_id=ended.user_id,
                    client_id=client_id, client_name=client.name, ip=client_ip(request), user_agent=request.headers.get("user-agent"),
                )
        callback = (addon.get("logout") or {}).get("callback")
        if message is None or message.kind != "LogoutRequest" or not callback:
            response = self.pages.render("logged_out.html")
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        configuration = effective_configuration(addon, acs_url=callback, sp_entity_id=message.issuer)
        answer = logout_response(
            issuer=addon.get("issuer") or idp_entity_id(self.services), destination=callback, in_response_to=message.id,
            status=SUCCESS, key=await self.services.saml_keys.current(), config=configuration,
        )
        if addon.get("binding") == HTTP_REDIRECT:
            response = await self._redirect_binding(callback, serialize(answer), params.get("RelayState"), configuration)
        else:
            fields = [("SAMLResponse", _encoded(serialize(answer)))]
            if params.get("RelayState"):
                fields.append(("RelayState", params["RelayState"]))
            response = self.pages.form_post(callback, fields)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def _logout_message(self, request: Request, addon: dict[str, Any], params: dict[str, str], encoded: str) -> LogoutMessage:
        redirect_binding = request.method == "GET"
        parameter = "SAMLRequest" if "SAMLRequest" in params else "SAMLResponse"
        try:
            xml = decode_message(encoded, deflated=redirect_binding)
            signed_root = None
            certificate = addon.get("signingCert")
            if certificate:
                if redirect_binding:
                    check_redirect_signature(request.url.query, certificate, message_parameter=parameter)
                else:
                    signed_root = check_post_signature(xml, certificate)
            message = read_logout_message(xml, root=signed_root)
            check_issue_instant(message.issue_instant, skew=self.services.settings.saml_clock_skew, max_age=self.services.settings.saml_request_max_age)
        except SamlRequestError as problem:
            raise _bad_request(str(problem)) from None
        return message

    async def _redirect_binding(self, url: str, xml: bytes, relay_state: str | None, configuration: dict[str, Any]) -> Response:
        """SAML Bindings §3.4.4: deflate, base64, and sign the query string with RSA-SHA256."""
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = deflater.compress(xml) + deflater.flush()
        query = f"SAMLResponse={quote(_encoded(payload), safe='')}"
        if relay_state:
            query += f"&RelayState={quote(relay_state, safe='')}"
        query += f"&SigAlg={quote(_RSA_SHA256, safe='')}"
        key = await self.services.saml_keys.current()
        signature = key.private_key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
        query += "&" + urlencode({"Signature": base64.b64encode(signature).decode()})
        separator = "&" if urlsplit(url).query else "?"
        return RedirectResponse(f"{url}{separator}{query}", status_code=302, headers={"Cache-Control": "no-store"})
