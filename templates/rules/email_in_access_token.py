"""Add the user's verified email address to the access token.

What it does
    Sets ``<CLAIMS_NAMESPACE>email`` in the access token to the user's email address,
    only when that address is verified (``email_verified is True``), so an API can use
    it to identify the user. An unverified address adds no claim. The ID token is not
    changed (it carries ``email`` and ``email_verified`` with the ``email`` scope).

Replaces the Auth0 use case
    "Add user's email address to the Access Token" - Auth0 docs:
    architecture-scenarios/mobile-api/api-implementation-nodejs
    (#4-determine-the-user-identity); template ``add-email-to-access-token``, which
    sets ``context.accessToken['https://example.com/email'] = user.email``.

Configuration (api.configuration)
    CLAIMS_NAMESPACE  required. A URL you control, e.g. ``https://example.com/`` (a
                      missing trailing ``/`` is added).

Adapt
    Auth0's template copied the address whether verified or not; an API that trusts
    the claim would then trust an address anyone can type in at sign-up (Auth0
    security bulletin 2019-09-05). If your API needs the address regardless, add a
    ``<namespace>email_verified`` claim too and make the API check it. Prefer ``sub``
    as the user's identifier: emails change and are unique per connection only.
"""


def rule(user, context, api):
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"
    if isinstance(user.email, str) and user.email and user.email_verified is True:
        context.access_token[namespace + "email"] = user.email
