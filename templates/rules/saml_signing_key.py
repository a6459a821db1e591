"""Sign one SAML application's responses with its own key pair instead of Bastion's.

What it does
    On SAML logins to one application (its ``client_id``, exactly), sets
    ``context.saml_configuration["cert"]`` and ``["key"]`` to the certificate and RSA
    private key from the configuration: Bastion signs that application's responses
    (the assertion, or the Response with ``signResponse``) with that key and embeds that
    certificate in the signature. Configure the service provider with that certificate
    (not the one in Bastion's metadata). Other applications keep Bastion's key; error
    Responses (a denied login) are signed with Bastion's key, as the rule's changes
    apply only to successful responses.

    A certificate and key that do not match, or cannot be read, stop the login
    (Bastion answers the service provider with an error Response): a response is never
    signed with a key the service provider does not expect, or left unsigned.

Replaces the Auth0 use case
    "Change the SAML signing key" - Auth0 docs: protocols/saml/saml-configuration/
    special-configuration-scenarios/signing-and-encrypting-saml-requests (a rule setting
    ``context.samlConfiguration.cert`` and ``.key`` for the application's clientID).

Configuration (api.configuration)
    SAML_SIGNING_CLIENT_ID  required. The client_id of the SAML application.
    SAML_SIGNING_CERT       required. The X.509 certificate, PEM (``-----BEGIN
                            CERTIFICATE-----...``).
    SAML_SIGNING_KEY        required. Its RSA private key, PEM, unencrypted (PKCS#8 or
                            PKCS#1). Both may be written on one line with ``\\n`` for
                            each line break, as in Auth0's rules.

Adapt
    The private key is a secret: keep it in the rule configuration only (sealed at
    rest), never in the script. To rotate it, give the service provider the new
    certificate first if it can trust two, then change both values together. Encrypting
    assertions (Auth0's ``encryptionCert``) is not supported.
"""


def _pem(api, name, marker):
    value = api.configuration.get(name, "").strip()
    if not value:
        raise ValueError(f"set {name}")
    value = value.replace("\\n", "\n")  # Auth0's one-line form
    if "-----BEGIN " not in value or marker not in value:
        raise ValueError(f"{name} must be a PEM {marker.lower()}")
    return value.strip() + "\n"


def _is_saml_login(context):
    return context.protocol == "samlp" or (
        context.protocol == "redirect-callback" and context.original_protocol == "samlp"
    )


def rule(user, context, api):
    client_id = api.configuration.get("SAML_SIGNING_CLIENT_ID", "").strip()
    if not client_id:
        raise ValueError("set SAML_SIGNING_CLIENT_ID to the client_id of the SAML application")
    if context.client_id != client_id or not _is_saml_login(context):
        return

    context.saml_configuration["cert"] = _pem(api, "SAML_SIGNING_CERT", "CERTIFICATE")
    context.saml_configuration["key"] = _pem(api, "SAML_SIGNING_KEY", "PRIVATE KEY")
