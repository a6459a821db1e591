"""SAML response settings from a rule: saml_customize_response.py lengthens the assertion's
lifetime, makes the UPN the NameID and sends a user_metadata field as an attribute."""

RULE = "../saml_customize_response.py"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
UPN = "alice@corp.example.com"


def saml_login(make_user, make_context, client_id="my-app-client-id", **user_fields):
    user = make_user(**user_fields)
    return {"user": user, "context": make_context("samlp", user=user, client_id=client_id)}


def test_a_user_with_a_upn_is_identified_by_it_for_ten_hours(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **saml_login(make_user, make_context, app_metadata={"upn": UPN}))

    result.assert_saml_attribute(CLAIMS + "/nameidentifier", [UPN])
    result.assert_saml_attribute(CLAIMS + "/upn", [UPN])
    assert result.saml.name_id == UPN
    assert result.saml.configuration["lifetime_in_seconds"] == 36000
    assert result.saml.warnings == []  # every change passed the SAML responder's checks


def test_a_upn_on_the_user_wins_over_app_metadata(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **saml_login(make_user, make_context, app_metadata={"upn": "old@corp.example.com"},
                                                extra={"upn": UPN}))

    assert result.saml.name_id == UPN


def test_a_user_without_a_upn_keeps_the_user_id_as_name_id(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **saml_login(make_user, make_context, user_metadata={"upn": UPN}))  # the user's own: ignored

    assert result.saml.name_id == "auth0|alice"
    result.assert_saml_attribute(CLAIMS + "/upn", ["alice@example.com"])  # Bastion's createUpnClaim: the email


def test_a_user_metadata_field_is_sent_with_a_default_that_is_not_saved(rule_runner, make_user, make_context):
    configuration = {"SAML_METADATA_FIELD": "preferences.color", "SAML_METADATA_DEFAULT": "blue", "SAML_LIFETIME_SECONDS": "600"}

    without = rule_runner.run(RULE, **saml_login(make_user, make_context), configuration=configuration)
    chosen = rule_runner.run(RULE, **saml_login(make_user, make_context, user_metadata={"preferences": {"color": "red"}}),
                             configuration={**configuration, "SAML_METADATA_ATTRIBUTE": "urn:example:color"})

    without.assert_saml_attribute(CLAIMS + "/color", ["blue"])
    assert without.effects.metadata_updates == [] and without.stored_user_metadata == {}
    chosen.assert_saml_attribute("urn:example:color", ["red"])
    assert without.saml.configuration["lifetime_in_seconds"] == 600


def test_other_applications_and_non_saml_logins_are_left_alone(rule_runner, make_user, make_context):
    configuration = {"SAML_CUSTOMIZE_CLIENT_IDS": "sp-client-id"}

    other = rule_runner.run(RULE, **saml_login(make_user, make_context, app_metadata={"upn": UPN}), configuration=configuration)
    oidc = rule_runner.run(RULE, user=make_user(app_metadata={"upn": UPN}), configuration=configuration)

    assert other.saml.name_id == "auth0|alice" and other.saml.configuration["lifetime_in_seconds"] == 3600
    oidc.assert_allowed()
    assert oidc.saml is None and "upn" not in oidc.user


def test_an_out_of_range_lifetime_fails_closed(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **saml_login(make_user, make_context), configuration={"SAML_LIFETIME_SECONDS": "0"})

    result.assert_error("SAML_LIFETIME_SECONDS must be between 1 and 604800")
