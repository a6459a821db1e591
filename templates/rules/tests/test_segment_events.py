"""Queued requests with basic authentication: segment_events.py tells Segment about sign-ups
and logins without making the login wait."""

import base64

RULE = "../segment_events.py"
CONFIGURATION = {"SEGMENT_WRITE_KEY": "segment-write-key-0123"}


def test_a_sign_up_is_identified_and_tracked(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(name="Alice Example"), configuration=CONFIGURATION)

    result.assert_allowed()
    (identify,) = result.assert_queued("POST", "https://api.segment.io/v1/identify")
    (track,) = result.assert_queued("POST", "https://api.segment.io/v1/track")
    expected = "Basic " + base64.b64encode(b"segment-write-key-0123:").decode()
    assert identify.header("Authorization") == track.header("Authorization") == expected
    assert identify.json["userId"] == track.json["userId"] == "auth0|alice"
    assert track.json["event"] == "Signed up"


def test_a_later_login_is_tracked_only(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(logins_count=5), configuration=CONFIGURATION)

    assert [r.url.split("?")[0] for r in result.effects.queued()] == ["https://api.segment.io/v1/track"]
    assert result.effects.queued()[0].json["event"] == "Logged In"
