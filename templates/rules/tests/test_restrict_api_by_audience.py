"""A denial by requested API: restrict_api_by_audience.py gives tokens for one API only to users
holding one of the allowed roles in app_metadata."""

RULE = "../restrict_api_by_audience.py"
API = "https://api.example.com"
CONFIGURATION = {"RESTRICTED_API_AUDIENCE": API, "RESTRICTED_API_ROLES": "api-user, admin"}
REFUSED = "You are not allowed to access this API."


def test_a_user_with_an_allowed_role_gets_the_token(rule_runner, make_user, make_context):
    user = make_user(app_metadata={"roles": ["viewer", "api-user"]})

    rule_runner.run(RULE, user=user, context=make_context(user=user, audience=API), configuration=CONFIGURATION).assert_allowed()


def test_a_user_without_one_is_denied_on_every_grant(rule_runner, make_user, make_context):
    for user in (make_user(), make_user(app_metadata={"roles": ["viewer"]}), make_user(app_metadata={"roles": "admin"}),
                 make_user(user_metadata={"roles": ["admin"]})):  # user_metadata is the user's own: never trusted
        for protocol in ("oidc-basic-profile", "oauth2-resource-owner"):
            result = rule_runner.run(RULE, user=user, context=make_context(protocol, user=user, audience=API),
                                     configuration=CONFIGURATION)
            result.assert_denied(REFUSED)


def test_the_audience_parameter_of_the_request_counts_too(rule_runner, make_user, make_context):
    user = make_user()
    body = {"grant_type": "refresh_token", "client_id": "my-app-client-id", "audience": API}

    result = rule_runner.run(RULE, user=user, context=make_context("oauth2-refresh-token", user=user, body=body),
                             configuration=CONFIGURATION)

    result.assert_denied(REFUSED)


def test_other_apis_and_logins_without_an_audience_are_not_restricted(rule_runner, make_user, make_context):
    user = make_user()

    rule_runner.run(RULE, user=user, context=make_context(user=user, audience="https://billing.example.com"),
                    configuration=CONFIGURATION).assert_allowed()
    rule_runner.run(RULE, user=user, configuration=CONFIGURATION).assert_allowed()


def test_without_its_configuration_the_rule_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("RESTRICTED_API_AUDIENCE")
    rule_runner.run(RULE, configuration={**CONFIGURATION, "RESTRICTED_API_ROLES": " , "}).assert_error(
        "RESTRICTED_API_AUDIENCE and RESTRICTED_API_ROLES must not be empty")
