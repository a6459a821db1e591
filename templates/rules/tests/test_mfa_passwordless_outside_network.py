"""A second factor by connection and network: mfa_passwordless_outside_network.py asks
passwordless logins from outside the corporate networks for MFA."""

RULE = "../mfa_passwordless_outside_network.py"
CONFIGURATION = {"CORPORATE_CIDRS": "10.0.0.0/8, 2001:db8::/32"}
ASK = {"provider": "any", "allow_remember_browser": False}


def passwordless(make_user, make_context, ip, connection="email"):
    user = make_user(connection=connection, phone_number="+15555550100" if connection == "sms" else None)
    return {"user": user, "context": make_context("oauth2-password", user=user, connection=connection, ip=ip)}


def test_a_passwordless_login_from_outside_is_asked(rule_runner, make_user, make_context):
    for connection in ("email", "sms"):
        result = rule_runner.run(RULE, **passwordless(make_user, make_context, "203.0.113.7", connection), configuration=CONFIGURATION)
        assert result.assert_allowed().multifactor == ASK


def test_inside_the_network_no_factor_is_asked(rule_runner, make_user, make_context):
    for ip in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1"):
        result = rule_runner.run(RULE, **passwordless(make_user, make_context, ip), configuration=CONFIGURATION)
        assert result.assert_allowed().multifactor is None


def test_an_unreadable_address_counts_as_outside(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **passwordless(make_user, make_context, "unknown"), configuration=CONFIGURATION)

    assert result.multifactor == ASK


def test_password_logins_and_refreshes_are_left_alone(rule_runner):
    for protocol in ("oidc-basic-profile", "oauth2-resource-owner", "oauth2-refresh-token"):
        result = rule_runner.run(RULE, protocol=protocol)  # no CORPORATE_CIDRS needed for them either
        assert result.assert_allowed().multifactor is None


def test_remembering_the_browser_is_configurable(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **passwordless(make_user, make_context, "203.0.113.7"),
                             configuration={**CONFIGURATION, "MFA_ALLOW_REMEMBER_BROWSER": "true"})

    assert result.multifactor == {"provider": "any", "allow_remember_browser": True}


def test_without_corporate_networks_a_passwordless_login_fails_closed(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **passwordless(make_user, make_context, "203.0.113.7"))

    result.assert_error("CORPORATE_CIDRS must list at least one network")
