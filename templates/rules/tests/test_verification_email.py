"""An account email: verification_email.py sends Bastion's verification email once, to users
whose address is not verified, and remembers that it did."""

RULE = "../verification_email.py"


def test_an_unverified_user_gets_the_verification_email_once(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(email_verified=False))

    result.assert_allowed()
    (email,) = result.effects.emails
    assert email.template == "verify_email"
    assert result.stored_app_metadata == {"verification_email_sent": True}


def test_verified_users_and_users_already_sent_one_get_nothing(rule_runner, make_user):
    for user in (make_user(email_verified=True), make_user(email_verified=False, app_metadata={"verification_email_sent": True})):
        result = rule_runner.run(RULE, user=user)
        result.assert_allowed()
        assert result.effects.emails == [] and result.effects.metadata_updates == []
