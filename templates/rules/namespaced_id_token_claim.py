"""Add non-standard, namespaced claims to the ID token.

What it does
    Copies the user's favourite colour and preferred contact method into the ID token
    as ``<CLAIMS_NAMESPACE>favorite_color`` and ``<CLAIMS_NAMESPACE>preferred_contact``.
    The colour is taken from ``user.favorite_color`` when an identity provider or an
    earlier rule set it on the user, else from ``user_metadata["favorite_color"]``;
    the contact method from ``user_metadata["preferred_contact"]``. A value that is
    not set adds no claim. The access token is not changed.

Replaces the Auth0 use case
    "Define a non-standard ID Token claim" - Auth0 docs:
    api-auth/tutorials/adoption/scope-custom-claims (#custom-claims), which sets
    ``context.idToken['https://myapp.example.com/favorite_color']`` and
    ``.../preferred_contact``; also the namespaced claims of
    scopes/current/sample-use-cases.

Configuration (api.configuration)
    CLAIMS_NAMESPACE  required. A URL you control, e.g. ``https://example.com/`` (a
                      missing trailing ``/`` is added). Standard OIDC claim names are
                      not namespaced; everything else should be, so it never collides
                      with a claim a future standard defines.

Adapt
    Change ``CLAIMS`` to the attributes your applications need. ``user_metadata`` is
    editable by the user: treat these claims as the user's preferences, never as
    authorization data (put that in ``app_metadata``). To give an API the same
    values, set them on ``context.access_token`` as well.
"""

# claim name (after the namespace) -> where the value comes from
CLAIMS = {
    "favorite_color": ("user", "favorite_color"),
    "preferred_contact": ("user_metadata", "preferred_contact"),
}


def _value(user, source, key):
    if source == "user" and user.get(key) is not None:
        return user.get(key)
    return user.user_metadata.get(key)


def rule(user, context, api):
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"
    for claim, (source, key) in CLAIMS.items():
        value = _value(user, source, key)
        if value is not None and value != "":
            context.id_token[namespace + claim] = value
