"""A queued request: keen_signups.py queues one event per sign-up with api.http.queue
(recorded by the kit, never sent)."""

RULE = "../keen_signups.py"
CONFIGURATION = {"KEEN_PROJECT_ID": "proj_123", "KEEN_WRITE_KEY": "keen-write-key-0123456789"}


def test_a_first_login_queues_the_signup_event(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(name="Alice Example"), configuration=CONFIGURATION)

    result.assert_allowed()
    (request,) = result.assert_queued("POST", "https://api.keen.io/3.0/projects/proj_123/events/signups", count=1)
    assert request.header("Authorization") == "keen-write-key-0123456789"
    assert request.json["userId"] == "auth0|alice"
    assert request.json["name"] == "Alice Example"
    assert request.json["ip"] == "203.0.113.7"


def test_later_logins_and_refreshes_send_nothing(rule_runner, make_user):
    rule_runner.run(RULE, user=make_user(logins_count=2), configuration=CONFIGURATION).assert_nothing_queued()
    rule_runner.run(RULE, protocol="oauth2-refresh-token", configuration=CONFIGURATION).assert_nothing_queued()


def test_the_collection_and_base_url_come_from_configuration(rule_runner):
    result = rule_runner.run(RULE, configuration={
        **CONFIGURATION, "KEEN_API_URL": "https://keen.internal.example.com/", "KEEN_EVENT_COLLECTION": "new users",
    })

    result.assert_queued("POST", "https://keen.internal.example.com/3.0/projects/proj_123/events/new%20users")
