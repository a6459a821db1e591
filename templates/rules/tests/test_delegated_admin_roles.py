"""An object claim and a denial, for one application: delegated_admin_roles.py tells the
Delegated Administration dashboard which of its roles the user has, and keeps out users with none."""

RULE = "../delegated_admin_roles.py"
DASHBOARD = "delegated-admin-client-id"
CLAIM = "https://admin.example.com/auth0-delegated-admin"
CONFIGURATION = {"DELEGATED_ADMIN_CLIENT_ID": DASHBOARD, "DELEGATED_ADMIN_NAMESPACE": "https://admin.example.com"}


def dashboard_login(make_user, make_context, **user_fields):
    user = make_user(**user_fields)
    return {"user": user, "context": make_context(user=user, client_id=DASHBOARD, client_name="Delegated Admin")}


def test_the_roles_from_bastion_and_app_metadata_become_the_claim(rule_runner, make_user, make_context):
    login = dashboard_login(make_user, make_context, roles=["Delegated Admin - Operator", "Billing"],
                            app_metadata={"roles": ["Delegated Admin - Administrator", "Delegated Admin - Operator"]})

    result = rule_runner.run(RULE, **login, configuration=CONFIGURATION)

    # Each once, in the dashboard's order; other roles are not the dashboard's business.
    result.assert_claim(CLAIM, {"roles": ["Delegated Admin - Administrator", "Delegated Admin - Operator"]}, token="id")
    result.assert_no_claim(CLAIM, token="access")


def test_a_user_without_a_dashboard_role_is_denied(rule_runner, make_user, make_context):
    for fields in ({}, {"roles": ["Billing"]}, {"user_metadata": {"roles": ["Delegated Admin - Administrator"]}}):
        result = rule_runner.run(RULE, **dashboard_login(make_user, make_context, **fields), configuration=CONFIGURATION)
        result.assert_denied("You do not have permission to access this application.")  # user_metadata is the user's own


def test_other_applications_are_not_affected(rule_runner):
    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed().assert_no_claim(CLAIM)


def test_without_its_configuration_the_rule_fails_closed(rule_runner):
    result = rule_runner.run(RULE, configuration={"DELEGATED_ADMIN_CLIENT_ID": DASHBOARD})

    result.assert_error("DELEGATED_ADMIN_CLIENT_ID and DELEGATED_ADMIN_NAMESPACE are required")
