"""SAML mappings replaced for one application: saml_sharepoint_groups.py gives SharePoint its
standard claims and one role claim value per group."""

RULE = "../saml_sharepoint_groups.py"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
ROLE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
SHAREPOINT = "sharepoint-client-id"
CONFIGURATION = {"SHAREPOINT_CLIENT_ID": SHAREPOINT}


def sharepoint_login(make_user, make_context, protocol="samlp", client_id=SHAREPOINT, **user_fields):
    user = make_user(name="Alice Example", **user_fields)
    return {"user": user, "context": make_context(protocol, user=user, client_id=client_id, client_name="SharePoint")}


def test_the_groups_become_role_claims_beside_the_standard_claims(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, groups=["Finance", " Staff ", "Finance"]),
                             configuration=CONFIGURATION)

    result.assert_saml_attribute(ROLE, ["Finance", "Staff"])
    result.assert_saml_attribute(CLAIMS + "/nameidentifier", ["auth0|alice"])
    result.assert_saml_attribute(CLAIMS + "/emailaddress", ["alice@example.com"])
    result.assert_saml_attribute(CLAIMS + "/name", ["Alice Example"])
    result.assert_saml_attribute(CLAIMS + "/upn", ["alice@example.com"])  # no upn: the email (createUpnClaim)
    assert result.saml.name_id == "auth0|alice"
    assert set(result.saml.configuration["mappings"]) == {CLAIMS + "/nameidentifier", CLAIMS + "/emailaddress",
                                                          CLAIMS + "/name", CLAIMS + "/upn", ROLE}


def test_app_metadata_groups_are_used_when_the_connection_gives_none(rule_runner, make_user, make_context):
    listed = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, app_metadata={"groups": ["Legal", "HR"]}),
                             configuration=CONFIGURATION)
    single = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, app_metadata={"groups": "Legal"}),
                             configuration=CONFIGURATION)

    listed.assert_saml_attribute(ROLE, ["Legal", "HR"])
    single.assert_saml_attribute(ROLE, ["Legal"])


def test_a_user_without_groups_gets_no_role_claim(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, user_metadata={"groups": ["Admins"]}),
                             configuration=CONFIGURATION)  # user_metadata is the user's own: never a group source

    assert result.assert_allowed().saml.attribute(ROLE) is None


def test_the_name_identifier_can_be_the_upn(rule_runner, make_user, make_context):
    configuration = {**CONFIGURATION, "SHAREPOINT_NAME_IDENTIFIER": "upn"}

    with_upn = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, extra={"upn": "alice@corp.example.com"}),
                               configuration=configuration)
    without = rule_runner.run(RULE, **sharepoint_login(make_user, make_context), configuration=configuration)

    assert with_upn.saml.name_id == "alice@corp.example.com"
    assert without.saml.name_id == "alice@example.com"


def test_other_applications_and_oidc_logins_keep_their_mappings(rule_runner, make_user, make_context):
    other = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, client_id="wiki-client-id", groups=["Finance"]),
                            configuration=CONFIGURATION)
    oidc = rule_runner.run(RULE, **sharepoint_login(make_user, make_context, "oidc-basic-profile", groups=["Finance"]),
                           configuration=CONFIGURATION)

    assert other.saml.attribute(ROLE) is None
    assert other.saml.configuration["mappings"][CLAIMS + "/givenname"] == "given_name"  # the defaults stay
    assert oidc.assert_allowed().saml is None


def test_wrong_settings_fail_closed(rule_runner, make_user, make_context):
    rule_runner.run(RULE, **sharepoint_login(make_user, make_context)).assert_error("set SHAREPOINT_CLIENT_ID or SHAREPOINT_CLIENT_NAME")
    rule_runner.run(RULE, **sharepoint_login(make_user, make_context),
                    configuration={**CONFIGURATION, "SHAREPOINT_NAME_IDENTIFIER": "email"}).assert_error(
        "SHAREPOINT_NAME_IDENTIFIER must be user_id or upn")
