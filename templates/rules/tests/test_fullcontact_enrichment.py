"""An awaited lookup saved for later logins: fullcontact_enrichment.py asks FullContact about
the user once, stores the answer (without `details`) in user_metadata and puts it in the ID token;
failures are swallowed and retried at the next login."""

RULE = "../fullcontact_enrichment.py"
ENRICH = "https://api.fullcontact.com/v3/person.enrich"
KEY = "fullcontact-key-0123456789"
NS = "https://example.com/"
CONFIGURATION = {"FULLCONTACT_API_KEY": KEY, "CLAIMS_NAMESPACE": NS}
PERSON = {"fullName": "Alice Example", "ageRange": "30-39", "location": "Berlin, Germany",
          "details": {"emails": [{"value": "alice@example.com"}], "photos": []}}
STORED = {k: v for k, v in PERSON.items() if k != "details"}


def test_the_person_is_stored_without_details_and_put_in_the_id_token(rule_runner):
    enrich = rule_runner.http.stub("POST", ENRICH, json=PERSON)

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_claim(NS + "fullcontact", STORED, token="id")
    result.assert_no_claim(NS + "fullcontact", token="access")
    (request,) = enrich.calls
    assert request.header("Authorization") == f"Bearer {KEY}"
    assert request.json == {"email": "alice@example.com"} and request.timeout == 5
    assert result.stored_user_metadata == {"fullcontact": STORED}
    assert result.stored_app_metadata == {}


def test_stored_data_or_no_email_means_no_call(rule_runner, make_user):
    # No stub: any call would fail the test.
    stored = rule_runner.run(RULE, user=make_user(user_metadata={"fullcontact": STORED}), configuration=CONFIGURATION)
    no_email = rule_runner.run(RULE, user=make_user(email=None, phone_number="+15555550100", connection="sms"),
                               configuration=CONFIGURATION)

    for result in (stored, no_email):
        result.assert_no_claim(NS + "fullcontact")
        assert result.effects.http_requests == [] and result.effects.metadata_updates == []


def test_an_unknown_person_saves_nothing_and_is_asked_again_next_time(rule_runner, make_user):
    enrich = rule_runner.http.stub("POST", ENRICH, status=404, json={"status": 404, "message": "Profile not found"})

    first = rule_runner.run(RULE, configuration=CONFIGURATION)
    second = rule_runner.run(RULE, user=make_user(user_metadata=first.stored_user_metadata, logins_count=2),
                             configuration=CONFIGURATION)

    for result in (first, second):
        result.assert_no_claim(NS + "fullcontact")
        assert result.effects.metadata_updates == []
        assert result.logs["fullcontact-enrichment"] == ["FullContact answered HTTP 404; no fullcontact data"]
    assert len(enrich.calls) == 2


def test_a_refused_key_or_a_timeout_is_swallowed_without_showing_the_key(rule_runner):
    rule_runner.http.stub("POST", ENRICH, status=401, json={"status": 401, "message": "Invalid authentication credentials"})
    refused = rule_runner.run(RULE, configuration=CONFIGURATION)
    rule_runner.http.stub("POST", ENRICH, error="ReadTimeout")
    timed_out = rule_runner.run(RULE, configuration=CONFIGURATION)

    for result in (refused, timed_out):
        result.assert_no_claim(NS + "fullcontact")
        assert result.effects.metadata_updates == []
        assert KEY not in result.describe()
    assert "ReadTimeout" in timed_out.logs["fullcontact-enrichment"][0]


def test_an_answer_that_is_not_an_object_is_not_stored(rule_runner):
    rule_runner.http.stub("POST", ENRICH, json=["not", "a", "person"])

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_no_claim(NS + "fullcontact")
    assert result.effects.metadata_updates == []


def test_the_url_and_timeout_come_from_configuration(rule_runner):
    enrich = rule_runner.http.stub("POST", "https://fc.internal.example.com/v3/person.enrich", json={"fullName": "Alice"})

    result = rule_runner.run(RULE, configuration={
        **CONFIGURATION, "FULLCONTACT_API_URL": "https://fc.internal.example.com/", "FULLCONTACT_TIMEOUT_SECONDS": "2"})

    result.assert_claim(NS + "fullcontact", {"fullName": "Alice"}, token="id")
    assert enrich.calls[0].timeout == 2
