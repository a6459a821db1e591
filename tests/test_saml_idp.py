"""Bastion as a SAML 2.0 identity provider, consumed by two real service providers
(pysaml2 with xmlsec1, and python3-saml): SP- and IdP-initiated logins, signatures,
audience, expiry, replays, single logout."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import Bastion, form_field, PASSWORD
from tests.saml_sp import OneLoginSP, Pysaml2SP, SpRejected, post_form

pytestmark = pytest.mark.postgres

SP_ENTITY = "https://sp.test/metadata"
ACS = "https://sp.test/acs"


async def saml_app(bastion: Bastion, **addon) -> tuple[dict, str]:
    client = await bastion.create_client(name="SAML App", callbacks=[ACS], addons={"samlp": addon})
    metadata = await bastion.http.get(f"/samlp/metadata/{client['client_id']}")
    assert metadata.status_code == 200, metadata.text
    return client, metadata.text


async def log_in(bastion: Bastion, response, email="alice@example.com", password=PASSWORD):
    """Follow Bastion's login page (if any) to the auto-submitting form for the SP."""
    if response.status_code == 302 and response.headers["location"].startswith("/u/login"):
        page = await bastion.http.get(response.headers["location"])
        response = await bastion.http.post(response.headers["location"], data={
            "state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
            "username": email, "password": password})
    assert response.status_code == 200, response.text
    return post_form(response.text)


@pytest.mark.parametrize("sp_class", [Pysaml2SP, OneLoginSP])
async def test_sp_initiated_login_by_redirect(bastion: Bastion, sp_class):
    await bastion.create_user(name="Alice Example", given_name="Alice")
    client, metadata = await saml_app(bastion)
    sp = sp_class(idp_metadata=metadata, entity_id=SP_ENTITY, acs_url=ACS)
    url, request_id = sp.redirect_request(relay_state="back-to-/reports")
    parts = urlsplit(url)
    response = await bastion.http.get(f"{parts.path}?{parts.query}")
    action, fields = await log_in(bastion, response)
    assert action == ACS
    assert fields["RelayState"] == "back-to-/reports"
    login = sp.accept(fields["SAMLResponse"], request_id=request_id)
    assert login.name_id.startswith("auth0|")
    assert login.attributes["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"] == ["alice@example.com"]
    assert login.in_response_to == request_id
