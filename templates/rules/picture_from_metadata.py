"""Use the picture the user chose (``user_metadata.picture``) in the ID token.

What it does
    When ``user_metadata["picture"]`` is an absolute ``https://`` URL, sets
    ``user.picture`` to it, so the ID token's ``picture`` claim (with the ``profile``
    scope) shows that picture instead of the identity provider's or the default one.
    Anything else (missing, ``http://``, ``javascript:``, ``data:``, a relative path)
    leaves the picture unchanged. The stored profile is not modified.

Replaces the Auth0 use case
    "Update a user profile metadata data field with information available via the ID
    Token" - Auth0 docs: users/guides/change-user-pictures, which sets
    ``user.picture = user.user_metadata.picture``.

Configuration (api.configuration)
    None.

Adapt
    ``user_metadata`` is editable by the user, so the URL is only as trustworthy as
    any user input: the rule accepts https URLs only, and applications should still
    render it as an image, never as a link target or HTML. To restrict pictures to
    your own image host, compare ``urlsplit(url).hostname`` exactly with it.
"""

from urllib.parse import urlsplit


def rule(user, context, api):
    picture = user.user_metadata.get("picture")
    if not isinstance(picture, str) or len(picture) > 2048:
        return
    try:
        parts = urlsplit(picture.strip())
    except ValueError:
        return
    if parts.scheme == "https" and parts.hostname:
        user.picture = picture.strip()
