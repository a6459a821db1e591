"""An optional, awaited lookup: towerdata_enrichment.py asks TowerData about a verified address
and puts the answer in the ID token; any failure leaves the login alone."""

RULE = "../towerdata_enrichment.py"
TOWERDATA = "https://api.towerdata.com/v5/td"
KEY = "towerdata-key-0123456789"
NS = "https://example.com/"
CONFIGURATION = {"TOWERDATA_API_KEY": KEY, "CLAIMS_NAMESPACE": NS}
PROFILE = {"age": "35-44", "gender": "Female", "eam": {"date_first_seen": "2012-01-01"}}


def test_a_verified_address_is_looked_up_and_the_profile_goes_into_the_id_token(rule_runner):
    lookup = rule_runner.http.stub("GET", TOWERDATA, query={"email": "alice@example.com", "api_key": KEY}, json=PROFILE)

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_claim(NS + "towerdata", PROFILE, token="id")
    result.assert_no_claim(NS + "towerdata", token="access")
    (request,) = lookup.calls
    assert request.timeout == 5
    assert result.effects.metadata_updates == []  # nothing is saved


def test_an_unverified_address_is_not_looked_up(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(email_verified=False), configuration=CONFIGURATION)  # no stub: a call would fail the test

    result.assert_no_claim(NS + "towerdata")
    assert result.effects.http_requests == []


def test_a_refused_key_leaves_the_login_alone_without_showing_the_key(rule_runner):
    rule_runner.http.stub("GET", TOWERDATA, status=401, json={"status_code": 401, "error_message": "Invalid API key"})

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_no_claim(NS + "towerdata")
    assert result.logs["towerdata-enrichment"] == ["TowerData answered HTTP 401; no towerdata claim"]
    assert KEY not in result.describe()


def test_an_unreachable_towerdata_leaves_the_login_alone(rule_runner):
    rule_runner.http.stub("GET", TOWERDATA, error="ReadTimeout")

    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_no_claim(NS + "towerdata")
    assert "ReadTimeout" in result.logs["towerdata-enrichment"][0]


def test_the_url_and_timeout_come_from_configuration(rule_runner):
    lookup = rule_runner.http.stub("GET", "https://td.internal.example.com/v5/td", json={"age": "25-34"})

    result = rule_runner.run(RULE, configuration={
        **CONFIGURATION, "CLAIMS_NAMESPACE": "https://claims.example.com", "TOWERDATA_API_URL": "https://td.internal.example.com/",
        "TOWERDATA_TIMEOUT_SECONDS": "1.5",
    })

    result.assert_claim("https://claims.example.com/towerdata", {"age": "25-34"}, token="id")  # the missing "/" is added
    assert lookup.calls[0].timeout == 1.5


def test_an_invalid_timeout_fails_closed(rule_runner):
    result = rule_runner.run(RULE, configuration={**CONFIGURATION, "TOWERDATA_TIMEOUT_SECONDS": "30"})

    result.assert_error("TOWERDATA_TIMEOUT_SECONDS must be between 0.1 and 15 seconds")
    assert result.effects.http_requests == []
