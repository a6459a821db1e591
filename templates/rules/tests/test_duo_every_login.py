"""A second factor from a named provider: duo_every_login.py sends every interactive login
through Duo with the Duo application's keys, and skips the refresh-token grant."""

RULE = "../duo_every_login.py"
CONFIGURATION = {"DUO_IKEY": "DIXXXXXXXXXXXXXXXXXX", "DUO_SKEY": "duo-secret-key-0123456789",
                 "DUO_HOST": "api-12345678.duosecurity.com"}


def test_every_login_asks_duo_and_no_browser_is_remembered(rule_runner):
    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.multifactor == {"provider": "duo", "ikey": "DIXXXXXXXXXXXXXXXXXX", "skey": "duo-secret-key-0123456789",
                                  "host": "api-12345678.duosecurity.com", "username": "alice@example.com",
                                  "allow_remember_browser": False}


def test_the_duo_username_and_remembering_come_from_configuration(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(username="alice.example"), configuration={
        **CONFIGURATION, "DUO_USERNAME_FIELD": "username", "DUO_ALLOW_REMEMBER_BROWSER": "true"})

    assert result.multifactor["username"] == "alice.example"
    assert result.multifactor["allow_remember_browser"] is True


def test_a_user_without_that_field_is_known_to_duo_by_email(rule_runner):
    result = rule_runner.run(RULE, configuration={**CONFIGURATION, "DUO_USERNAME_FIELD": "username"})

    assert result.multifactor["username"] == "alice@example.com"


def test_the_password_grant_asks_too_and_the_refresh_token_grant_does_not(rule_runner):
    password = rule_runner.run(RULE, protocol="oauth2-resource-owner", configuration=CONFIGURATION)
    refresh = rule_runner.run(RULE, protocol="oauth2-refresh-token", configuration=CONFIGURATION)

    assert password.multifactor["provider"] == "duo"  # Bastion answers interaction_required there
    refresh.assert_allowed()
    assert refresh.multifactor is None


def test_without_the_duo_keys_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE, configuration={"DUO_HOST": "api-12345678.duosecurity.com"}).assert_error("DUO_IKEY")
