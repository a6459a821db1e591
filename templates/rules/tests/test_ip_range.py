"""A denial by network: ip_range.py lets one application be used only from the listed IP ranges."""

RULE = "../ip_range.py"
INTRANET = "intranet-client-id"
CONFIGURATION = {"IP_RANGE_CLIENT_ID": INTRANET, "IP_RANGE_ALLOWED_CIDRS": "192.168.1.128/26, 2001:db8::/32"}
REFUSED = "Access to this application is not allowed from your network."


def intranet_login(make_user, make_context, ip, **fields):
    user = make_user()
    return {"user": user, "context": make_context(user=user, client_id=INTRANET, ip=ip, **fields)}


def test_addresses_inside_a_listed_range_are_allowed(rule_runner, make_user, make_context):
    for ip in ("192.168.1.134", "192.168.1.191", "2001:db8::7", "::ffff:192.168.1.134"):  # the last: IPv4-mapped IPv6
        rule_runner.run(RULE, **intranet_login(make_user, make_context, ip), configuration=CONFIGURATION).assert_allowed()


def test_addresses_outside_and_unreadable_ones_are_denied(rule_runner, make_user, make_context):
    for ip in ("192.168.1.192", "203.0.113.7", "2001:db9::1", "not-an-address", ""):
        result = rule_runner.run(RULE, **intranet_login(make_user, make_context, ip), configuration=CONFIGURATION)
        result.assert_denied(REFUSED)


def test_the_password_grant_is_restricted_too(rule_runner, make_user, make_context):
    login = intranet_login(make_user, make_context, "203.0.113.7")
    login["context"] = make_context("oauth2-resource-owner", user=login["user"], client_id=INTRANET, ip="203.0.113.7")

    rule_runner.run(RULE, **login, configuration=CONFIGURATION).assert_denied(REFUSED)


def test_the_application_may_be_named_and_others_are_not_restricted(rule_runner, make_user, make_context):
    by_name = {"IP_RANGE_CLIENT_NAME": "Intranet", "IP_RANGE_ALLOWED_CIDRS": "10.0.0.0/8"}
    user = make_user()

    named = rule_runner.run(RULE, user=user, context=make_context(user=user, client_name="Intranet", ip="203.0.113.7"),
                            configuration=by_name)
    other = rule_runner.run(RULE, user=user, context=make_context(user=user, ip="203.0.113.7"), configuration=by_name)

    named.assert_denied(REFUSED)
    other.assert_allowed()


def test_without_its_configuration_the_rule_fails_closed(rule_runner, make_user, make_context):
    rule_runner.run(RULE).assert_error("set IP_RANGE_CLIENT_ID or IP_RANGE_CLIENT_NAME")
    result = rule_runner.run(RULE, **intranet_login(make_user, make_context, "192.168.1.134"),
                             configuration={"IP_RANGE_CLIENT_ID": INTRANET, "IP_RANGE_ALLOWED_CIDRS": " , "})
    result.assert_error("IP_RANGE_ALLOWED_CIDRS must list at least one network")
