"""SAML attributes: saml_aws_role_mapping.py sends AWS its Role, RoleSessionName and
SessionDuration attributes and a persistent NameID, on the AWS application's SAML logins."""

RULE = "../saml_aws_role_mapping.py"
AWS_CLIENT_ID = "aws-client-id"
ADMIN = "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/Bastion"
READER = "arn:aws:iam::123456789012:role/Reader,arn:aws:iam::123456789012:saml-provider/Bastion"
ROLE = "https://aws.amazon.com/SAML/Attributes/Role"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def aws_login(make_user, make_context, **user_fields):
    user = make_user(**user_fields)
    return user, make_context("samlp", user=user, client_id=AWS_CLIENT_ID, client_name="AWS")


def test_the_roles_session_name_and_duration_become_attributes(rule_runner, make_user, make_context):
    user, context = aws_login(make_user, make_context, app_metadata={"aws_roles": [ADMIN], "ad_groups": ["aws_readers"]})

    result = rule_runner.run(RULE, user=user, context=context, configuration={
        "AWS_SAML_CLIENT_ID": AWS_CLIENT_ID, "AWS_SESSION_DURATION": "7200", "AWS_GROUP_ROLES": f'{{"aws_readers": "{READER}"}}',
    })

    result.assert_saml_attribute(ROLE, [ADMIN, READER])
    result.assert_saml_attribute("https://aws.amazon.com/SAML/Attributes/RoleSessionName", ["alice@example.com"])
    result.assert_saml_attribute("https://aws.amazon.com/SAML/Attributes/SessionDuration", ["7200"])
    assert result.saml.name_id == "auth0|alice"
    assert result.saml.name_id_format == PERSISTENT
    assert result.saml.warnings == []


def test_a_user_without_an_aws_role_is_denied(rule_runner, make_user, make_context):
    user, context = aws_login(make_user, make_context, app_metadata={"aws_roles": ["not-an-arn"]})

    result = rule_runner.run(RULE, user=user, context=context, configuration={"AWS_SAML_CLIENT_ID": AWS_CLIENT_ID})

    result.assert_denied("You have no AWS role: ask your administrator for access to AWS.")
    assert "skipped a malformed app_metadata.aws_roles entry: 'not-an-arn'" in result.logs["saml-aws-role-mapping"]


def test_other_applications_keep_their_attributes(rule_runner, make_user, make_context):
    user = make_user(app_metadata={"aws_roles": [ADMIN]})

    result = rule_runner.run(RULE, user=user, context=make_context("samlp", user=user), configuration={"AWS_SAML_CLIENT_ID": AWS_CLIENT_ID})

    assert result.saml.attribute(ROLE) is None
    assert result.saml.name_id == "auth0|alice"
