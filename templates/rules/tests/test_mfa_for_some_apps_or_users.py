"""A second factor on conditions: mfa_for_some_apps_or_users.py asks for MFA on the listed
applications and, everywhere, for users flagged in app_metadata."""

RULE = "../mfa_for_some_apps_or_users.py"
ASK = {"provider": "any", "allow_remember_browser": False}
CONFIGURATION = {"MFA_CLIENT_IDS": "payroll-client-id, hr-client-id"}


def test_a_listed_application_asks_every_user(rule_runner, make_user, make_context):
    user = make_user()

    result = rule_runner.run(RULE, user=user, context=make_context(user=user, client_id="hr-client-id"), configuration=CONFIGURATION)

    assert result.assert_allowed().multifactor == ASK


def test_a_flagged_user_is_asked_on_any_application(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(app_metadata={"use_mfa": True}))

    assert result.multifactor == ASK


def test_other_logins_are_left_alone(rule_runner, make_user):
    for user in (make_user(), make_user(app_metadata={"use_mfa": "true"}), make_user(user_metadata={"use_mfa": True})):
        result = rule_runner.run(RULE, user=user, configuration=CONFIGURATION)  # the user cannot switch it on (or off)
        assert result.assert_allowed().multifactor is None


def test_the_refresh_token_grant_is_skipped(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(app_metadata={"use_mfa": True}), protocol="oauth2-refresh-token")

    assert result.assert_allowed().multifactor is None


def test_remembering_the_browser_is_configurable_and_checked(rule_runner, make_user):
    flagged = make_user(app_metadata={"use_mfa": True})

    remembered = rule_runner.run(RULE, user=flagged, configuration={"MFA_ALLOW_REMEMBER_BROWSER": "TRUE"})
    wrong = rule_runner.run(RULE, user=flagged, configuration={"MFA_ALLOW_REMEMBER_BROWSER": "yes"})

    assert remembered.multifactor == {"provider": "any", "allow_remember_browser": True}
    wrong.assert_error("MFA_ALLOW_REMEMBER_BROWSER must be true or false")
