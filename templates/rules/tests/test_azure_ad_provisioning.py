"""A chain of awaited calls that must all succeed: azure_ad_provisioning.py creates and licenses
an Azure AD account once per user of the Office 365 application, saves where it is, and gives
the UPN to the tokens and the SAML response; any failure fails the login closed."""

import base64
import re
import uuid

RULE = "../azure_ad_provisioning.py"
OFFICE = "office-365-client-id"
TENANT = "contoso.onmicrosoft.com"
SECRET = "azure-graph-secret-0123456789"
TOKEN = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
GRAPH = "https://graph.microsoft.com/v1.0"
NS = "https://example.com/"
CONFIGURATION = {
    "AZURE_AD_CLIENT_ID": OFFICE, "AZURE_AD_TENANT": TENANT, "AZURE_AD_GRAPH_CLIENT_ID": "graph-app-id",
    "AZURE_AD_GRAPH_CLIENT_SECRET": SECRET, "AZURE_AD_DOMAIN": "example.com", "CLAIMS_NAMESPACE": NS,
}
ACCOUNT = "5f2b7c1e-0000-4000-8000-000000000001"
UPN = "bastion-5f2b7c1e-0000-4000-8000-000000000001@example.com"
SKUS = {"value": [{"skuId": "sku-ems", "skuPartNumber": "EMS"}, {"skuId": "sku-o365", "skuPartNumber": "O365_BUSINESS"}]}
PROVISIONED = {"office365UserId": ACCOUNT, "office365UPN": UPN, "office365ImmutableId": "HnwrXwAAAECAAAAAAAAAAQ==",
               "office365Provisioned": True}
UPN_ATTRIBUTE = "http://schemas.xmlsoap.org/claims/UPN"
IMMUTABLE_ID_ATTRIBUTE = "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID"


def microsoft(rule_runner, *, skus_status=200):
    """Azure AD's token endpoint and the Graph calls, answering as Microsoft does."""
    return {
        "token": rule_runner.http.stub("POST", TOKEN, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token"}),
        "create": rule_runner.http.stub("POST", f"{GRAPH}/users", status=201, json={"id": ACCOUNT, "userPrincipalName": UPN}),
        "skus": rule_runner.http.stub("GET", f"{GRAPH}/subscribedSkus", status=skus_status,
                                      json=SKUS if skus_status == 200 else {"error": {"code": "ServiceUnavailable"}}),
        "license": rule_runner.http.stub("POST", f"{GRAPH}/users/{ACCOUNT}/assignLicense", json={"id": ACCOUNT}),
    }


def office_login(make_user, make_context, protocol="oidc-basic-profile", **user_fields):
    user = make_user(**user_fields)
    return {"user": user, "context": make_context(protocol, user=user, client_id=OFFICE, client_name="Office 365")}


def test_a_first_login_creates_and_licenses_the_account_and_saves_it(rule_runner, make_user, make_context):
    calls = microsoft(rule_runner)

    result = rule_runner.run(RULE, **office_login(make_user, make_context, name="Alice Example"), configuration=CONFIGURATION)

    result.assert_claim(NS + "upn", UPN, token="id")
    (token,) = calls["token"].calls
    assert token.data == {"grant_type": "client_credentials", "client_id": "graph-app-id", "client_secret": SECRET,
                          "scope": "https://graph.microsoft.com/.default"}
    (created,) = calls["create"].calls
    body = created.json
    guid = uuid.UUID(re.fullmatch(r"bastion-([0-9a-f-]{36})@example\.com", body["userPrincipalName"]).group(1))
    assert (body["accountEnabled"], body["displayName"], body["mailNickname"], body["usageLocation"]) == (
        True, "Alice Example", f"bastion-{guid.hex}", "US")
    assert base64.b64decode(body["onPremisesImmutableId"]) == guid.bytes_le
    assert len(body["passwordProfile"]["password"]) >= 16
    (license,) = calls["license"].calls
    assert license.json == {"addLicenses": [{"skuId": "sku-o365", "disabledPlans": []}], "removeLicenses": []}
    for request in (created, calls["skus"].calls[0], license):
        assert request.header("Authorization") == "Bearer graph-token"
    # Saved in two steps: where the account is (at once, so a retry reuses it), then that it is licensed.
    assert [u.changes for u in result.effects.metadata_updates] == [
        {"office365UserId": ACCOUNT, "office365UPN": UPN, "office365ImmutableId": body["onPremisesImmutableId"]},
        {"office365Provisioned": True}]
    assert result.stored_app_metadata["office365Provisioned"] is True
    assert body["passwordProfile"]["password"] not in result.describe()


def test_a_provisioned_user_calls_nobody_and_gets_the_saved_upn(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **office_login(make_user, make_context, app_metadata=PROVISIONED),
                             configuration=CONFIGURATION)  # no stub: a call would fail the test

    result.assert_claim(NS + "upn", UPN, token="id")
    assert result.effects.http_requests == [] and result.effects.metadata_updates == []


def test_the_saml_response_carries_the_upn_and_immutable_id(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **office_login(make_user, make_context, "samlp", app_metadata=PROVISIONED),
                             configuration=CONFIGURATION)

    result.assert_saml_attribute(UPN_ATTRIBUTE, [UPN])
    result.assert_saml_attribute(IMMUTABLE_ID_ATTRIBUTE, [PROVISIONED["office365ImmutableId"]])


def test_other_applications_and_skipped_connections_are_left_alone(rule_runner, make_user, make_context):
    other = rule_runner.run(RULE, configuration=CONFIGURATION)
    skipped = rule_runner.run(RULE, **office_login(make_user, make_context, connection="corp-ad"),
                              configuration={**CONFIGURATION, "AZURE_AD_SKIP_CONNECTIONS": "corp-ad, google-apps"})

    for result in (other, skipped):
        result.assert_no_claim(NS + "upn")
        assert result.effects.http_requests == [] and result.effects.metadata_updates == []


def test_a_refused_token_fails_the_login_closed_without_showing_the_secret(rule_runner, make_user, make_context):
    calls = microsoft(rule_runner)
    rule_runner.http.stub("POST", TOKEN, status=401, json={"error": "invalid_client", "error_description": "AADSTS7000215"})

    result = rule_runner.run(RULE, **office_login(make_user, make_context), configuration=CONFIGURATION)

    result.assert_error("the Azure AD token endpoint answered HTTP 401 (invalid_client)")
    assert calls["create"].calls == [] and result.effects.metadata_updates == []
    assert SECRET not in result.describe()


def test_a_failure_after_creating_the_account_fails_closed_and_the_retry_reuses_it(rule_runner, make_user, make_context):
    calls = microsoft(rule_runner, skus_status=503)
    first = rule_runner.run(RULE, **office_login(make_user, make_context), configuration=CONFIGURATION)

    first.assert_error("Graph (subscribedSkus) answered HTTP 503 (ServiceUnavailable)")
    assert len(calls["create"].calls) == 1 and calls["license"].calls == []
    assert first.stored_app_metadata["office365UserId"] == ACCOUNT and "office365Provisioned" not in first.stored_app_metadata

    calls = microsoft(rule_runner)  # Graph is back
    second = rule_runner.run(RULE, **office_login(make_user, make_context, app_metadata=first.stored_app_metadata, logins_count=2),
                             configuration=CONFIGURATION)

    second.assert_claim(NS + "upn", UPN, token="id")
    assert calls["create"].calls == []  # the same account, no second one
    assert len(calls["license"].calls) == 1
    assert second.stored_app_metadata["office365Provisioned"] is True


def test_an_unknown_sku_fails_closed(rule_runner, make_user, make_context):
    calls = microsoft(rule_runner)

    result = rule_runner.run(RULE, **office_login(make_user, make_context), configuration={**CONFIGURATION, "AZURE_AD_SKU": "SPE_E5"})

    result.assert_error("the tenant has no subscribed SKU [redacted]")  # a configuration value: redacted, as in records
    assert calls["license"].calls == []
    assert "office365Provisioned" not in result.stored_app_metadata


def test_provisioned_without_a_upn_fails_closed(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **office_login(make_user, make_context, app_metadata={"office365Provisioned": True}),
                             configuration=CONFIGURATION)

    result.assert_error("has no office365UPN")
