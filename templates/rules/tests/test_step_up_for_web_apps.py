"""Step-up on the application's request: step_up_for_web_apps.py asks for a second factor when
the authorization request carries the multi-factor acr_values and the session has not passed MFA."""

import time

RULE = "../step_up_for_web_apps.py"
MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
ASK = {"provider": "any", "allow_remember_browser": False}
NOW = int(time.time() * 1000)


def authorize(make_user, make_context, acr_values=None, client_id="my-app-client-id", **fields):
    """A browser login whose authorization request carries `acr_values` (when given)."""
    user = make_user()
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": "https://app.example.com/callback",
             "scope": "openid profile", "state": "af0ifjsldkj"}
    if acr_values is not None:
        query["acr_values"] = acr_values
    return {"user": user, "context": make_context(user=user, client_id=client_id, query=query, **fields)}


def test_the_multi_factor_acr_value_asks_for_mfa(rule_runner, make_user, make_context):
    for acr_values in (MFA_ACR, f"urn:example:loa:1 {MFA_ACR}"):  # a space-separated list
        result = rule_runner.run(RULE, **authorize(make_user, make_context, acr_values))
        assert result.assert_allowed().multifactor == ASK


def test_other_requests_are_left_alone(rule_runner, make_user, make_context):
    for acr_values in (None, "urn:example:loa:1", MFA_ACR + "-not"):
        result = rule_runner.run(RULE, **authorize(make_user, make_context, acr_values))
        assert result.assert_allowed().multifactor is None


def test_a_session_that_passed_mfa_is_not_asked_again(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **authorize(make_user, make_context, MFA_ACR, methods=[("pwd", NOW), ("mfa", NOW)]))

    assert result.assert_allowed().multifactor is None


def test_only_the_listed_applications_are_honoured(rule_runner, make_user, make_context):
    configuration = {"STEP_UP_WEB_CLIENT_IDS": "portal-client-id"}

    listed = rule_runner.run(RULE, **authorize(make_user, make_context, MFA_ACR, client_id="portal-client-id"), configuration=configuration)
    other = rule_runner.run(RULE, **authorize(make_user, make_context, MFA_ACR), configuration=configuration)

    assert listed.multifactor == ASK and other.multifactor is None
