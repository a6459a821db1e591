"""Denials and claims from Bastion's groups, roles and permissions: authorization_extension.py keeps
end users away from the extension's API and applications from users without a required role,
puts the user's authorization in the tokens and can persist it."""

RULE = "../authorization_extension.py"
NS = "https://example.com/"


def authorized_user(make_user, **fields):
    return make_user(groups=["Finance"], roles=["Editor", "Viewer"], permissions=["read:reports", "write:reports"], **fields)


def test_groups_roles_and_permissions_go_into_both_tokens(rule_runner, make_user):
    result = rule_runner.run(RULE, user=authorized_user(make_user), configuration={"AUTHZ_NAMESPACE": "https://example.com"})

    result.assert_claim(NS + "groups", ["Finance"])
    result.assert_claim(NS + "roles", ["Editor", "Viewer"])
    result.assert_claim(NS + "permissions", ["read:reports", "write:reports"])
    assert result.effects.metadata_updates == []  # not persisted unless asked


def test_the_claims_and_tokens_can_be_chosen(rule_runner, make_user):
    result = rule_runner.run(RULE, user=authorized_user(make_user), configuration={
        "AUTHZ_NAMESPACE": NS, "AUTHZ_CLAIMS": "roles", "AUTHZ_TOKENS": "id_token"})

    result.assert_claim(NS + "roles", ["Editor", "Viewer"], token="id")
    result.assert_no_claim(NS + "roles", token="access")
    result.assert_no_claim(NS + "groups").assert_no_claim(NS + "permissions")


def test_without_a_namespace_no_claim_is_added(rule_runner, make_user):
    result = rule_runner.run(RULE, user=authorized_user(make_user))

    result.assert_allowed()
    assert result.id_token_claims == {} and result.access_token_claims == {}


def test_end_users_get_no_token_for_the_extension_api(rule_runner, make_user, make_context):
    user = authorized_user(make_user)

    default = rule_runner.run(RULE, user=user, context=make_context(user=user, audience="urn:auth0-authz-api"))
    configured = rule_runner.run(RULE, user=user,
                                 context=make_context("oauth2-resource-owner", user=user, audience="https://authz.example.com"),
                                 configuration={"AUTHZ_API_AUDIENCE": "https://authz.example.com"})

    default.assert_denied("no_end_users")
    configured.assert_denied("no_end_users")


def test_an_application_with_required_roles_admits_only_their_holders(rule_runner, make_user, make_context):
    metadata = {"required_roles": "Admin, Editor"}
    editor = authorized_user(make_user)
    viewer = make_user(roles=["Viewer"])
    nobody = make_user()  # a tenant without roles: no user.roles at all

    rule_runner.run(RULE, user=editor, context=make_context(user=editor, client_metadata=metadata)).assert_allowed()
    for user in (viewer, nobody):
        result = rule_runner.run(RULE, user=user, context=make_context(user=user, client_metadata=metadata, client_name="Payroll"))
        result.assert_denied("You do not have the required role to access Payroll")


def test_persisted_authorization_is_written_only_when_it_changed(rule_runner, make_user):
    configuration = {"AUTHZ_PERSIST": "true"}
    first = rule_runner.run(RULE, user=authorized_user(make_user), configuration=configuration)
    again = rule_runner.run(RULE, user=authorized_user(make_user, app_metadata=first.stored_app_metadata), configuration=configuration)

    assert first.stored_app_metadata == {"authorization": {
        "groups": ["Finance"], "roles": ["Editor", "Viewer"], "permissions": ["read:reports", "write:reports"]}}
    assert again.effects.metadata_updates == []


def test_wrong_settings_fail_closed(rule_runner, make_user):
    user = authorized_user(make_user)

    rule_runner.run(RULE, user=user, configuration={"AUTHZ_CLAIMS": "roles"}).assert_error("AUTHZ_CLAIMS is set but AUTHZ_NAMESPACE is not")
    rule_runner.run(RULE, user=user, configuration={"AUTHZ_NAMESPACE": NS, "AUTHZ_CLAIMS": "roles, scopes"}).assert_error(
        "AUTHZ_CLAIMS may name only groups, roles, permissions, not scopes")
