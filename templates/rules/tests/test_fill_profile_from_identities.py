"""Profile claims from linked accounts: fill_profile_from_identities.py fills the attributes the
user lacks from the first secondary identity that has them, for this login's tokens only."""

RULE = "../fill_profile_from_identities.py"
GOOGLE = {"provider": "google-oauth2", "user_id": "1234567890", "is_social": True,
          "profile_data": {"given_name": "Alice", "family_name": "", "picture": "https://lh3.googleusercontent.com/a/alice"}}
GITHUB = {"provider": "github", "user_id": "42", "is_social": True,
          "profile_data": {"family_name": "Example", "given_name": "Ally", "name": "Alice Example"}}


def test_missing_attributes_come_from_the_first_identity_that_has_them(rule_runner, make_user):
    user = make_user(linked_identities=[GOOGLE, GITHUB])

    result = rule_runner.run(RULE, user=user)

    result.assert_allowed()
    assert result.profile["given_name"] == "Alice"  # the first identity with a value
    assert result.profile["family_name"] == "Example"  # the first one's is empty: the next one's
    # name and picture were set at sign-up (the email, Gravatar): kept.
    assert (result.profile["name"], result.profile["picture"]) == (user["name"], user["picture"])
    assert result.effects.metadata_updates == []  # tokens only, nothing saved


def test_values_the_user_has_are_never_replaced(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(given_name="Al", family_name="Ex", linked_identities=[GITHUB]))

    assert (result.profile["given_name"], result.profile["family_name"]) == ("Al", "Ex")


def test_an_empty_name_or_picture_is_filled(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(linked_identities=[GOOGLE, GITHUB], extra={"name": " ", "picture": ""}))

    assert result.profile["name"] == "Alice Example"
    assert result.profile["picture"] == "https://lh3.googleusercontent.com/a/alice"


def test_a_user_without_linked_identities_is_unchanged(rule_runner, make_user):
    user = make_user()

    result = rule_runner.run(RULE, user=user)

    assert "given_name" not in result.profile and result.user["identities"] == user["identities"]
