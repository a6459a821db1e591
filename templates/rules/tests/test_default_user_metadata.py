"""Metadata persistence: default_user_metadata.py saves the defaults a user lacks with
api.users.update_user_metadata, and writes nothing when nothing is missing."""

RULE = "../default_user_metadata.py"


def test_missing_defaults_are_saved(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"theme": "dark"}))

    result.assert_allowed()
    assert result.stored_user_metadata == {"theme": "dark", "preferred_language": "en"}
    assert result.user["user_metadata"] == result.stored_user_metadata  # later rules see it too
    (update,) = result.effects.metadata_updates
    assert (update.kind, update.user_id, update.changes) == ("user_metadata", "auth0|alice", {"preferred_language": "en"})


def test_existing_values_are_never_overwritten(rule_runner, make_user):
    result = rule_runner.run(
        RULE, user=make_user(user_metadata={"preferred_language": "fr"}),
        configuration={"DEFAULT_USER_METADATA": '{"preferred_language": "en", "newsletter": false}'},
    )

    assert result.stored_user_metadata == {"preferred_language": "fr", "newsletter": False}
    assert [u.changes for u in result.effects.metadata_updates] == [{"newsletter": False}]


def test_nothing_missing_means_no_write(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"preferred_language": "de"}))

    result.assert_allowed()
    assert result.effects.metadata_updates == []


def test_a_configuration_that_is_not_an_object_fails_closed(rule_runner):
    rule_runner.run(RULE, configuration={"DEFAULT_USER_METADATA": '["en"]'}).assert_error("must be a JSON object")
