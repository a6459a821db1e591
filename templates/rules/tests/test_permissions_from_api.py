"""HTTP answered by stubs: permissions_from_api.py asks a permissions service for the
user's roles, saves them in app_metadata and puts them in the tokens."""

from bastion.keys.jose import verify_hs256

RULE = "../permissions_from_api.py"
SERVICE = "https://permissions.example.com/v1/roles"
SECRET = "a-shared-secret-of-at-least-32-characters"
CONFIGURATION = {"PERMISSIONS_API_URL": SERVICE, "PERMISSIONS_API_SECRET": SECRET, "CLAIMS_NAMESPACE": "https://example.com/"}


def test_the_roles_from_the_service_are_saved_and_put_in_the_tokens(rule_runner):
    service = rule_runner.http.stub("GET", SERVICE, json={"roles": ["editor", "viewer"]})

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_claim("https://example.com/roles", ["editor", "viewer"])
    assert result.stored_app_metadata == {"roles": ["editor", "viewer"]}
    (request,) = service.calls
    token = request.header("Authorization").removeprefix("Bearer ")
    claims = verify_hs256(token, SECRET)  # the service can check what the rule signed
    assert claims["sub"] == "auth0|alice" and claims["email"] == "alice@example.com" and claims["aud"] == SERVICE


def test_unchanged_roles_are_not_written_again(rule_runner, make_user):
    rule_runner.http.stub("GET", SERVICE, json={"roles": ["editor"]})

    result = rule_runner.run(RULE, user=make_user(app_metadata={"roles": ["editor"]}), configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.effects.metadata_updates == []


def test_a_failing_service_fails_the_login_closed(rule_runner):
    rule_runner.http.stub("GET", SERVICE, status=503, text="unavailable")

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_error("the permissions service answered HTTP 503")
    assert result.effects.metadata_updates == []


def test_an_unreachable_service_fails_the_login_closed(rule_runner):
    rule_runner.http.stub("GET", SERVICE, error="ConnectTimeout")

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_error("ConnectTimeout")


def test_the_secret_never_shows_in_the_error(rule_runner):
    rule_runner.http.stub("GET", SERVICE, json={"roles": SECRET})  # a malformed answer: the rule raises

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_error("did not answer")
    assert SECRET not in result.describe()
