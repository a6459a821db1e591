"""An awaited vendor call that must succeed: splunk_events.py posts each login to Splunk's HTTP
Event Collector and fails the login closed when Splunk does not take it."""

HEC = "https://splunk.example.com:8088/services/collector/event"
CONFIGURATION = {"SPLUNK_HEC_URL": HEC, "SPLUNK_HEC_TOKEN": "hec-token-0123456789"}
RULE = "../splunk_events.py"


def test_a_first_login_is_a_sign_up_and_marks_the_user(rule_runner, make_user):
    hec = rule_runner.http.stub("POST", HEC, json={"text": "Success", "code": 0})

    result = rule_runner.run(RULE, user=make_user(name="Alice Example"), configuration=CONFIGURATION)

    result.assert_allowed()
    (request,) = hec.calls
    assert request.header("Authorization") == "Splunk hec-token-0123456789"
    assert request.json["event"]["message"] == "SignUp" and request.json["event"]["userId"] == "auth0|alice"
    assert result.stored_app_metadata == {"signedUp": True}


def test_a_later_login_is_a_login(rule_runner, make_user):
    hec = rule_runner.http.stub("POST", HEC, json={"text": "Success", "code": 0})

    rule_runner.run(RULE, user=make_user(app_metadata={"signedUp": True}), configuration=CONFIGURATION).assert_allowed()

    assert hec.calls[0].json["event"]["message"] == "Login"


def test_splunk_refusing_the_event_fails_the_login_without_showing_the_token(rule_runner):
    rule_runner.http.stub("POST", HEC, status=403, json={"text": "Invalid token", "code": 4})

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_error("Splunk HEC answered HTTP 403")
    assert "hec-token-0123456789" not in result.describe()
    assert result.effects.metadata_updates == []
