"""Denial: disable_flagged_users.py stops users whose app_metadata flag is exactly true;
restrict_application_by_client.py keeps one application to an allow-list."""

FLAGGED = "../disable_flagged_users.py"
RESTRICTED = "../restrict_application_by_client.py"


def test_a_flagged_user_is_denied(rule_runner, make_user):
    result = rule_runner.run(FLAGGED, user=make_user(app_metadata={"deleted": True}))

    result.assert_denied("Access denied (account disabled)")


def test_only_the_boolean_true_denies(rule_runner, make_user):
    for value in (False, "true", None):
        rule_runner.run(FLAGGED, user=make_user(app_metadata={"deleted": value})).assert_allowed()


def test_the_configured_flags_apply_on_the_password_grant_too(rule_runner, make_user):
    result = rule_runner.run(
        FLAGGED, user=make_user(app_metadata={"blocked_by_consent": True}), protocol="oauth2-resource-owner",
        configuration={"DISABLE_FLAGGED_USERS_KEYS": "deleted, blocked_by_consent"},
    )

    result.assert_denied("Access denied (account disabled)")


RESTRICTION = {"RESTRICTED_APP_CLIENT_ID": "payroll-client-id", "RESTRICTED_APP_ALLOWED_EMAILS": "alice@example.com"}


def test_the_restricted_application_needs_a_verified_email_on_the_list(rule_runner, make_user, make_context):
    verified = make_user()
    unverified = make_user(email_verified=False)

    allowed = rule_runner.run(RESTRICTED, user=verified, context=make_context(user=verified, client_id="payroll-client-id"),
                              configuration=RESTRICTION)
    denied = rule_runner.run(RESTRICTED, user=unverified, context=make_context(user=unverified, client_id="payroll-client-id"),
                             configuration=RESTRICTION)

    allowed.assert_allowed()
    denied.assert_denied("You are not allowed to use this application.")


def test_other_applications_are_not_restricted(rule_runner, make_user):
    rule_runner.run(RESTRICTED, user=make_user(email="mallory@example.com"), configuration=RESTRICTION).assert_allowed()


def test_without_its_configuration_the_restriction_fails_closed(rule_runner):
    result = rule_runner.run(RESTRICTED)

    result.assert_error("set RESTRICTED_APP_CLIENT_ID or RESTRICTED_APP_CLIENT_NAME")
    assert result.error.startswith("ValueError")
    assert "raise ValueError" in result.traceback
