"""Step-up by scope: step_up_for_api_scope.py asks for a second factor, never remembered, when a
login requests a high-value scope of the configured API and the session has not passed MFA."""

import time

RULE = "../step_up_for_api_scope.py"
BANK = "https://bank.example.com"
CONFIGURATION = {"STEP_UP_API_AUDIENCE": BANK, "STEP_UP_API_SCOPES": "transfer:funds, close:account"}
ASK = {"provider": "any", "allow_remember_browser": False}
NOW = int(time.time() * 1000)


def login(make_user, make_context, protocol="oidc-basic-profile", **fields):
    user = make_user()
    return {"user": user, "context": make_context(protocol, user=user, **fields)}


def test_a_high_value_scope_asks_for_mfa(rule_runner, make_user, make_context):
    for protocol in ("oidc-basic-profile", "oauth2-resource-owner"):  # the query, or the token request's body
        result = rule_runner.run(RULE, **login(make_user, make_context, protocol, audience=BANK, scope="openid transfer:funds"),
                                 configuration=CONFIGURATION)
        assert result.assert_allowed().multifactor == ASK, protocol


def test_other_scopes_and_other_apis_are_not_challenged(rule_runner, make_user, make_context):
    for fields in ({"audience": BANK, "scope": "openid read:balance"},
                   {"audience": "https://shop.example.com", "scope": "openid transfer:funds"},
                   {"scope": "openid transfer:funds"}):
        result = rule_runner.run(RULE, **login(make_user, make_context, **fields), configuration=CONFIGURATION)
        assert result.assert_allowed().multifactor is None, fields


def test_a_session_that_passed_mfa_is_not_asked_again(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **login(make_user, make_context, audience=BANK, scope="openid transfer:funds",
                                           methods=[("pwd", NOW), ("mfa", NOW)]), configuration=CONFIGURATION)

    assert result.assert_allowed().multifactor is None


def test_a_refresh_naming_the_scope_is_stopped_even_after_mfa(rule_runner, make_user, make_context):
    body = {"grant_type": "refresh_token", "client_id": "my-app-client-id", "scope": "transfer:funds"}

    result = rule_runner.run(RULE, **login(make_user, make_context, "oauth2-refresh-token", audience=BANK, body=body,
                                           methods=[("pwd", NOW), ("mfa", NOW)]), configuration=CONFIGURATION)

    assert result.multifactor == ASK  # a refresh cannot show a page: asking stops it


def test_only_the_listed_applications_are_concerned(rule_runner, make_user, make_context):
    configuration = {**CONFIGURATION, "STEP_UP_API_CLIENT_IDS": "banking-app-id"}
    fields = {"audience": BANK, "scope": "openid transfer:funds"}

    listed = rule_runner.run(RULE, **login(make_user, make_context, client_id="banking-app-id", **fields), configuration=configuration)
    other = rule_runner.run(RULE, **login(make_user, make_context, **fields), configuration=configuration)

    assert listed.multifactor == ASK and other.multifactor is None


def test_without_its_configuration_the_rule_fails_closed(rule_runner):
    rule_runner.run(RULE, configuration={"STEP_UP_API_AUDIENCE": BANK}).assert_error("set STEP_UP_API_AUDIENCE and STEP_UP_API_SCOPES")
