"""Token claims and scopes: customize_tokens.py adds a namespaced `plan` claim and may
replace the access token's scopes for one API."""

RULE = "../customize_tokens.py"
CONFIGURATION = {"CLAIMS_NAMESPACE": "https://example.com/"}


def test_the_plan_from_app_metadata_goes_into_both_tokens(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(app_metadata={"plan": "gold"}), configuration=CONFIGURATION)

    result.assert_claim("https://example.com/plan", "gold")
    result.assert_scopes(None)  # no scope configured: the requested scopes stay


def test_a_user_without_a_plan_gets_free(rule_runner):
    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_claim("https://example.com/plan", "free", token="id")
    result.assert_claim("https://example.com/plan", "free", token="access")


def test_scopes_are_replaced_only_for_the_configured_api(rule_runner, make_user, make_context):
    user = make_user(app_metadata={"plan": "gold"})
    configuration = {**CONFIGURATION, "CUSTOMIZE_TOKENS_SCOPES": "read:reports export:reports",
                     "CUSTOMIZE_TOKENS_AUDIENCE": "https://reports.example.com"}

    for_the_api = rule_runner.run(
        RULE, user=user, context=make_context(user=user, audience="https://reports.example.com"), configuration=configuration,
    )
    for_another_api = rule_runner.run(
        RULE, user=user, context=make_context(user=user, audience="https://billing.example.com"), configuration=configuration,
    )

    for_the_api.assert_scopes(["read:reports", "export:reports"])
    for_another_api.assert_scopes(None)


def test_the_refresh_token_grant_gets_the_same_claims(rule_runner, make_user):
    result = rule_runner.run(
        RULE, user=make_user(app_metadata={"plan": "gold"}), protocol="oauth2-refresh-token", configuration=CONFIGURATION,
    )

    result.assert_claim("https://example.com/plan", "gold")
