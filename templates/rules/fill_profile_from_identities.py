"""Fill missing profile attributes from the user's linked (secondary) identities.

What it does
    For ``given_name``, ``family_name``, ``name`` and ``picture``: when the user has no
    value (missing or empty), takes it from the first identity whose ``profile_data``
    has a non-empty string for it. Values the user already has are never replaced.
    The change applies to this login's tokens (the ID token's standard claims, with the
    ``profile`` scope) and to later rules; it is not saved on the user.

Replaces the Auth0 use case
    "Add missing user profile information from secondary identities" - Auth0 docs:
    link-accounts (#properties-from-secondary-identities), which copies
    ``given_name``, ``family_name`` and ``name`` from ``user.identities[i].profileData``.

Configuration (api.configuration)
    None.

Adapt
    Change ``ATTRIBUTES`` to the standard attributes you want filled. Database users
    get a default ``name`` (their email) and ``picture`` (a Gravatar URL) at sign-up,
    so those two are only filled when an administrator cleared them; to prefer an
    identity provider's values anyway, drop the "already has a value" test for them.
    Never fill ``email`` or ``email_verified`` this way: a secondary identity's email is
    not a verified claim about the primary account.
"""

ATTRIBUTES = ("given_name", "family_name", "name", "picture")


def rule(user, context, api):
    for attribute in ATTRIBUTES:
        current = user.get(attribute)
        if isinstance(current, str) and current.strip():
            continue
        for identity in user.identities or []:
            profile = identity.profile_data if isinstance(identity.profile_data, dict) else {}
            value = profile.get(attribute)
            if isinstance(value, str) and value.strip():
                user[attribute] = value
                break
