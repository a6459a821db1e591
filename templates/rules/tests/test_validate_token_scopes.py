"""Scopes replaced by permissions: validate_token_scopes.py keeps the requested OpenID scopes and
grants the user's permissions instead of the API scopes the application asked for."""

RULE = "../validate_token_scopes.py"
PERMISSIONS = {"permissions": ["read:timesheets", "create:timesheets"]}


def test_requested_api_scopes_are_replaced_by_the_users_permissions(rule_runner, make_user, make_context):
    user = make_user(app_metadata=PERMISSIONS)

    result = rule_runner.run(RULE, user=user, context=make_context(user=user, scope="openid profile read:timesheets admin delete:timesheets"))

    result.assert_scopes(["openid", "profile", "read:timesheets", "create:timesheets"])


def test_the_password_grant_reads_the_scopes_from_its_body(rule_runner, make_user, make_context):
    user = make_user(app_metadata=PERMISSIONS)

    result = rule_runner.run(RULE, user=user, context=make_context("oauth2-resource-owner", user=user, scope="openid email approve:timesheets"))

    result.assert_scopes(["openid", "email", "read:timesheets", "create:timesheets"])


def test_a_user_without_permissions_keeps_only_openid_scopes(rule_runner, make_user, make_context):
    for metadata in ({}, {"permissions": "read:timesheets"}):
        user = make_user(app_metadata=metadata, user_metadata={"permissions": ["admin"]})
        result = rule_runner.run(RULE, user=user, context=make_context(user=user, scope="openid offline_access read:timesheets"))
        result.assert_scopes(["openid", "offline_access"])


def test_a_refresh_without_scope_gets_the_permissions_only(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(app_metadata=PERMISSIONS), protocol="oauth2-refresh-token")

    result.assert_scopes(["read:timesheets", "create:timesheets"])


def test_only_the_listed_applications_are_changed(rule_runner, make_user, make_context):
    user = make_user(app_metadata=PERMISSIONS)
    configuration = {"VALIDATE_SCOPES_CLIENT_IDS": "timesheets-spa"}

    listed = rule_runner.run(RULE, user=user, context=make_context(user=user, client_id="timesheets-spa", scope="openid admin"),
                             configuration=configuration)
    other = rule_runner.run(RULE, user=user, context=make_context(user=user, scope="openid admin"), configuration=configuration)

    listed.assert_scopes(["openid", "read:timesheets", "create:timesheets"])
    other.assert_scopes(None)
