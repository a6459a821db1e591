"""Awaited vendor calls that must not fail the login: salesforce_lead.py gets a Salesforce token,
creates the Lead, and sets `recordedAsLead` only once Salesforce created it, so a failure is
retried at the next login instead of being forgotten."""

RULE = "../salesforce_lead.py"
LOGIN = "https://login.salesforce.com/services/oauth2/token"
INSTANCE = "https://eu12.my.salesforce.com"
LEAD = INSTANCE + "/services/data/v60.0/sobjects/Lead"
ACCESS_TOKEN = "00D5g000000AbCd!salesforce-access-token"
CONFIGURATION = {
    "SALESFORCE_CLIENT_ID": "3MVG9-connected-app", "SALESFORCE_CLIENT_SECRET": "sf-client-secret-0123",
    "SALESFORCE_USERNAME": "integration@example.com", "SALESFORCE_PASSWORD": "sf-password-0123TOKEN4567",
}
SECRETS = ("sf-client-secret-0123", "sf-password-0123TOKEN4567")


def salesforce(rule_runner, *, lead_status=201, login=LOGIN, lead=LEAD):
    """The token endpoint and the Lead endpoint, answering as Salesforce does."""
    token = rule_runner.http.stub("POST", login, json={
        "access_token": ACCESS_TOKEN, "instance_url": INSTANCE, "token_type": "Bearer",
        "id": "https://login.salesforce.com/id/00D5g000000AbCdEAF/0055g00000XyZ12AAB"})
    if lead_status == 201:
        answer = {"id": "00Q5g00000ABCDEF", "success": True, "errors": []}
    else:
        answer = [{"message": "Unable to lock row", "errorCode": "UNABLE_TO_LOCK_ROW"}]
    return token, rule_runner.http.stub("POST", lead, status=lead_status, json=answer)


def test_a_new_user_becomes_a_lead_and_is_flagged(rule_runner, make_user):
    token, lead = salesforce(rule_runner)

    result = rule_runner.run(RULE, user=make_user(name="Alice Example"), configuration=CONFIGURATION)

    result.assert_allowed()
    (token_request,) = token.calls
    assert token_request.data == {"grant_type": "password", "client_id": "3MVG9-connected-app",
                                  "client_secret": "sf-client-secret-0123", "username": "integration@example.com",
                                  "password": "sf-password-0123TOKEN4567"}
    (created,) = lead.calls  # at the instance_url Salesforce's token answer gave
    assert created.header("Authorization") == f"Bearer {ACCESS_TOKEN}"
    assert created.json == {"LastName": "Alice Example", "Company": "Web channel signups", "LeadSource": "Web",
                            "Email": "alice@example.com"}
    assert token_request.timeout == 5 and 4 < created.timeout <= 5  # one budget for both calls
    assert result.stored_app_metadata == {"recordedAsLead": True}
    result.assert_nothing_queued()  # awaited, not queued: the flag means the Lead exists


def test_a_failed_lead_sets_no_flag_and_the_next_login_creates_it_once(rule_runner, make_user):
    """The bug this guards against: a queued Lead that later failed for good was never retried."""
    _, failing = salesforce(rule_runner, lead_status=500)
    first = rule_runner.run(RULE, configuration=CONFIGURATION)

    first.assert_allowed()  # a failure never fails the login
    assert len(failing.calls) == 1 and first.effects.metadata_updates == []
    assert any("HTTP 500 (UNABLE_TO_LOCK_ROW)" in line for line in first.logs["salesforce-lead"])

    _, working = salesforce(rule_runner)  # Salesforce is back; the user is as the first login stored it
    second = rule_runner.run(RULE, user=make_user(app_metadata=first.stored_app_metadata, logins_count=2),
                             configuration=CONFIGURATION)
    assert len(working.calls) == 1 and second.stored_app_metadata == {"recordedAsLead": True}

    third = rule_runner.run(RULE, user=make_user(app_metadata=second.stored_app_metadata, logins_count=3),
                            configuration=CONFIGURATION)
    third.assert_allowed()
    assert len(working.calls) == 1 and third.effects.http_requests == []  # flagged: no token, no Lead


def test_an_unreachable_lead_endpoint_leaves_the_flag_unset(rule_runner):
    salesforce(rule_runner)
    rule_runner.http.stub("POST", LEAD, error="ReadTimeout")

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.stored_app_metadata == {}
    assert any("ReadTimeout" in line for line in result.logs["salesforce-lead"])


def test_a_refused_token_creates_nothing_and_shows_no_secret(rule_runner):
    rule_runner.http.stub("POST", LOGIN, status=400, json={"error": "invalid_grant", "error_description": "authentication failure"})
    lead = rule_runner.http.stub("POST", LEAD, status=201, json={"id": "00Q", "success": True, "errors": []})

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed()
    assert lead.calls == [] and result.effects.metadata_updates == []
    assert any("HTTP 400 (invalid_grant)" in line for line in result.logs["salesforce-lead"])
    assert not any(secret in result.describe() for secret in SECRETS)


def test_the_login_url_api_version_and_company_come_from_configuration(rule_runner, make_user):
    _, lead = salesforce(rule_runner, login="https://test.salesforce.com/services/oauth2/token",
                         lead=INSTANCE + "/services/data/v59.0/sobjects/Lead")

    result = rule_runner.run(RULE, user=make_user(email=None, username="alice"), configuration={
        **CONFIGURATION, "SALESFORCE_LOGIN_URL": "https://test.salesforce.com/", "SALESFORCE_API_VERSION": "v59.0",
        "SALESFORCE_COMPANY": "Example Corp", "SALESFORCE_TIMEOUT_SECONDS": "2.5",
    })

    result.assert_allowed()
    (created,) = lead.calls
    assert created.json == {"LastName": "alice", "Company": "Example Corp", "LeadSource": "Web"}  # no email, no Email
    assert 2 < created.timeout <= 2.5


def test_an_invalid_timeout_fails_closed_before_any_call(rule_runner):
    result = rule_runner.run(RULE, configuration={**CONFIGURATION, "SALESFORCE_TIMEOUT_SECONDS": "60"})

    result.assert_error("SALESFORCE_TIMEOUT_SECONDS must be between 0.1 and 15 seconds")
    assert result.effects.http_requests == []
