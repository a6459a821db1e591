"""An account email, once and only to proven addresses: welcome_email.py sends Bastion's welcome
email at the first login with a verified address and remembers that it did."""

RULE = "../welcome_email.py"


def test_a_verified_user_gets_the_welcome_once_and_is_flagged(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(email_verified=True))

    result.assert_allowed()
    (email,) = result.effects.emails
    assert (email.template, email.to, email.subject) == ("welcome_email", None, None)  # Bastion's template, to this user
    assert result.stored_app_metadata == {"welcome_email_sent": True}
    assert result.user["app_metadata"] == {"welcome_email_sent": True}


def test_the_flag_stops_a_second_welcome(rule_runner, make_user):
    first = rule_runner.run(RULE)
    second = rule_runner.run(RULE, user=make_user(app_metadata=first.stored_app_metadata, logins_count=2))

    second.assert_allowed()
    assert second.effects.emails == [] and second.effects.metadata_updates == []


def test_an_unverified_address_gets_no_welcome_yet(rule_runner, make_user):
    for user in (make_user(email_verified=False), make_user(email=None, username="alice")):
        result = rule_runner.run(RULE, user=user)
        result.assert_allowed().assert_nothing_queued()
        assert result.effects.metadata_updates == []  # not flagged: the welcome comes once verified


def test_the_welcome_also_comes_on_the_password_grant(rule_runner):
    result = rule_runner.run(RULE, protocol="oauth2-resource-owner")

    assert [e.template for e in result.effects.emails] == ["welcome_email"]
