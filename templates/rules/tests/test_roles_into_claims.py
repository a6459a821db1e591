"""A list claim in both tokens: roles_into_claims.py merges app_metadata roles with the roles
Bastion's authorization gives the login."""

RULE = "../roles_into_claims.py"
NS = "https://example.com/"
CONFIGURATION = {"CLAIMS_NAMESPACE": NS}


def test_both_sources_are_merged_each_role_once(rule_runner, make_user, make_context):
    user = make_user(app_metadata={"roles": ["editor", "", 7, "viewer"]})

    result = rule_runner.run(RULE, user=user, context=make_context(user=user, roles=["viewer", "admin"]),
                             configuration=CONFIGURATION)

    result.assert_claim(NS + "roles", ["editor", "viewer", "admin"])  # first-seen order; non-names dropped


def test_a_user_without_roles_gets_an_empty_list(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"roles": ["admin"]}), configuration=CONFIGURATION)

    result.assert_claim(NS + "roles", [])  # present, so applications can rely on it; user_metadata is ignored


def test_without_a_namespace_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("CLAIMS_NAMESPACE")
