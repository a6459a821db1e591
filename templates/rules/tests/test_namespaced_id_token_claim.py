"""Namespaced ID token claims from the profile: namespaced_id_token_claim.py copies the favourite
colour and the preferred contact method into the ID token."""

RULE = "../namespaced_id_token_claim.py"
NS = "https://myapp.example.com/"
CONFIGURATION = {"CLAIMS_NAMESPACE": "https://myapp.example.com"}


def test_user_metadata_values_become_id_token_claims(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"favorite_color": "blue", "preferred_contact": "email"}),
                             configuration=CONFIGURATION)

    result.assert_claim(NS + "favorite_color", "blue", token="id")
    result.assert_claim(NS + "preferred_contact", "email", token="id")
    assert result.access_token_claims == {}


def test_an_attribute_on_the_user_wins_over_user_metadata(rule_runner, make_user):
    user = make_user(user_metadata={"favorite_color": "blue"}, extra={"favorite_color": "green"})  # e.g. from the identity provider

    result = rule_runner.run(RULE, user=user, configuration=CONFIGURATION)

    result.assert_claim(NS + "favorite_color", "green", token="id")
    result.assert_no_claim(NS + "preferred_contact", token="id")


def test_missing_or_empty_values_add_no_claim(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"favorite_color": "", "preferred_contact": None}),
                             configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.id_token_claims == {}


def test_without_a_namespace_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("CLAIMS_NAMESPACE")
