"""A standard profile claim from user_metadata: picture_from_metadata.py uses the picture the
user chose in the ID token, when it is an https URL."""

RULE = "../picture_from_metadata.py"
CHOSEN = "https://images.example.com/alice.png"


def test_an_https_picture_replaces_the_default_in_the_id_token(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"picture": f"  {CHOSEN} "}))

    result.assert_allowed()
    assert result.profile["picture"] == CHOSEN
    assert result.effects.metadata_updates == []  # the stored profile is not changed


def test_anything_but_an_https_url_leaves_the_picture_alone(rule_runner, make_user):
    default = make_user()["picture"]
    for picture in ("http://images.example.com/alice.png", "javascript:alert(1)", "data:image/png;base64,AAAA",
                    "/alice.png", "https://", 42, "https://images.example.com/" + "a" * 2048):
        result = rule_runner.run(RULE, user=make_user(user_metadata={"picture": picture}))
        assert result.assert_allowed().profile["picture"] == default, picture
