"""A queued GET with the event in its query: mixpanel_signup.py tells Mixpanel about each
sign-up (base64 JSON in `data`), and about nothing else."""

import base64
import json
import time

RULE = "../mixpanel_signup.py"
TRACK = "https://api.mixpanel.com/track/"
CONFIGURATION = {"MIXPANEL_TOKEN": "mixpanel-project-token-0123"}


def event_of(request) -> dict:
    return json.loads(base64.b64decode(request.query["data"]))


def test_a_first_login_queues_the_sign_up_event(rule_runner):
    before = int(time.time())

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed()
    (request,) = result.assert_queued("GET", TRACK, count=1)
    event = event_of(request)
    assert event["event"] == "Sign Up"
    properties = event["properties"]
    assert {k: properties[k] for k in ("distinct_id", "token", "application")} == {
        "distinct_id": "auth0|alice", "token": "mixpanel-project-token-0123", "application": "My App"}
    assert before <= properties["time"] <= int(time.time())  # the login's time, kept if the delivery is late
    assert len(properties["$insert_id"]) == 32  # lets Mixpanel drop a duplicate delivery


def test_each_sign_up_gets_its_own_insert_id(rule_runner):
    first = rule_runner.run(RULE, configuration=CONFIGURATION)
    second = rule_runner.run(RULE, configuration=CONFIGURATION)

    ids = {event_of(r.effects.queued_requests[0])["properties"]["$insert_id"] for r in (first, second)}
    assert len(ids) == 2


def test_later_logins_refreshes_and_the_return_from_a_redirect_send_nothing(rule_runner, make_user, make_context):
    rule_runner.run(RULE, user=make_user(logins_count=2), configuration=CONFIGURATION).assert_nothing_queued()
    rule_runner.run(RULE, protocol="oauth2-refresh-token", configuration=CONFIGURATION).assert_nothing_queued()
    user = make_user()  # still logins_count 1: the same login, back at /continue
    rule_runner.run(RULE, user=user, context=make_context("redirect-callback", user=user),
                    configuration=CONFIGURATION).assert_nothing_queued()


def test_the_event_name_and_base_url_come_from_configuration(rule_runner):
    result = rule_runner.run(RULE, configuration={
        **CONFIGURATION, "MIXPANEL_EVENT": "Registered", "MIXPANEL_API_URL": "https://api-eu.mixpanel.com/"})

    (request,) = result.assert_queued("GET", "https://api-eu.mixpanel.com/track/")
    assert event_of(request)["event"] == "Registered"


def test_without_a_token_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("MIXPANEL_TOKEN")
