"""A SAML key pair from configuration: saml_signing_key.py makes Bastion sign one application's
responses with that application's own certificate and key."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.saml.keys import KeyPairError, key_pair_from_pem, self_signed_certificate

RULE = "../saml_signing_key.py"
SP = "sp-client-id"


def pem_pair(common_name="sp.example.com"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return self_signed_certificate(key, common_name), key_pem


CERT, KEY = pem_pair()


def configuration(cert=CERT, key=KEY):
    return {"SAML_SIGNING_CLIENT_ID": SP, "SAML_SIGNING_CERT": cert, "SAML_SIGNING_KEY": key}


def sp_login(make_user, make_context, protocol="samlp", client_id=SP):
    user = make_user()
    return {"user": user, "context": make_context(protocol, user=user, client_id=client_id)}


def test_the_applications_pair_signs_its_responses(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **sp_login(make_user, make_context), configuration=configuration())

    result.assert_allowed()
    saml = result.saml.configuration
    assert (saml["cert"], saml["key"]) == (CERT, KEY)
    assert result.saml.warnings == []
    # What the SAML responder does with them: this pair loads and matches.
    assert key_pair_from_pem(saml["cert"], saml["key"]).certificate_pem == CERT


def test_auth0s_one_line_form_is_accepted(rule_runner, make_user, make_context):
    one_line = configuration(cert=CERT.strip().replace("\n", "\\n"), key=KEY.strip().replace("\n", "\\n"))

    result = rule_runner.run(RULE, **sp_login(make_user, make_context), configuration=one_line)

    assert (result.saml.configuration["cert"], result.saml.configuration["key"]) == (CERT, KEY)


def test_other_applications_and_oidc_logins_keep_bastions_key(rule_runner, make_user, make_context):
    other = rule_runner.run(RULE, **sp_login(make_user, make_context, client_id="other-sp-client-id"), configuration=configuration())
    oidc = rule_runner.run(RULE, **sp_login(make_user, make_context, "oidc-basic-profile"), configuration=configuration())

    assert other.saml.configuration.get("cert") is None and other.saml.configuration.get("key") is None
    assert oidc.assert_allowed().saml is None


def test_a_value_that_is_not_the_right_pem_fails_closed(rule_runner, make_user, make_context):
    swapped = rule_runner.run(RULE, **sp_login(make_user, make_context), configuration=configuration(cert=KEY, key=CERT))
    missing = rule_runner.run(RULE, **sp_login(make_user, make_context), configuration={"SAML_SIGNING_CLIENT_ID": SP})

    swapped.assert_error("SAML_SIGNING_CERT must be a PEM certificate")
    missing.assert_error("set SAML_SIGNING_CERT")


def test_a_key_of_another_certificate_is_refused_by_the_responder(rule_runner, make_user, make_context):
    """The rule only checks the PEM form; the pair is checked when the response is signed, which
    answers the service provider with an error Response (not an unsigned one)."""
    other_cert, _ = pem_pair("other.example.com")

    result = rule_runner.run(RULE, **sp_login(make_user, make_context), configuration=configuration(cert=other_cert))

    saml = result.saml.configuration
    assert saml["cert"] == other_cert  # passed on as configured
    with pytest.raises(KeyPairError, match="the key does not match the certificate"):
        key_pair_from_pem(saml["cert"], saml["key"])


def test_without_the_application_the_rule_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("set SAML_SIGNING_CLIENT_ID to the client_id of the SAML application")
