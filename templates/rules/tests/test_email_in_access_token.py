"""An access token claim, only for a proven address: email_in_access_token.py gives APIs the
user's email when it is verified, and nothing otherwise."""

RULE = "../email_in_access_token.py"
CONFIGURATION = {"CLAIMS_NAMESPACE": "https://example.com"}


def test_a_verified_email_goes_into_the_access_token_only(rule_runner):
    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_claim("https://example.com/email", "alice@example.com", token="access")  # the missing "/" is added
    result.assert_no_claim("https://example.com/email", token="id")


def test_an_unverified_or_missing_email_adds_no_claim(rule_runner, make_user):
    for user in (make_user(email_verified=False), make_user(email=None, username="alice")):
        rule_runner.run(RULE, user=user, configuration=CONFIGURATION).assert_no_claim("https://example.com/email")


def test_the_refresh_token_grant_gets_it_too(rule_runner):
    result = rule_runner.run(RULE, protocol="oauth2-refresh-token", configuration=CONFIGURATION)

    result.assert_claim("https://example.com/email", "alice@example.com", token="access")


def test_without_a_namespace_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("CLAIMS_NAMESPACE")
