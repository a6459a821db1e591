"""Disable login for users flagged in their app_metadata.

What it does
    Denies the login (``error=unauthorized``, "Access denied (account disabled)") when
    any of the configured ``app_metadata`` flags is exactly ``true`` - for example
    ``deleted`` set when a user withdrew consent and asked for erasure, or
    ``blocked_by_consent``. Any other value (missing, ``false``, the string
    ``"true"``) lets the user through. Applies to every application and, because rules
    run there too, to the password and refresh-token grants.

Replaces the Auth0 use case
    "Disable login for flagged users" - Auth0 docs:
    compliance/gdpr/features-aiding-compliance/user-consent
    (#step-2-disable-login-for-flagged-users), which denies
    ``UnauthorizedError('Access denied (deleted user)')`` when
    ``user.app_metadata.deleted === true``.

Configuration (api.configuration)
    DISABLE_FLAGGED_USERS_KEYS  optional, default ``deleted``. Comma- or space-separated
                                ``app_metadata`` keys; a user with any of them set to
                                ``true`` cannot log in.

Adapt
    Set the flag with the Management API (``PATCH /api/v2/users/{id}`` with
    ``{"app_metadata": {"deleted": true}}``); ``app_metadata`` cannot be changed by the
    user. To block a user outright, Bastion's ``blocked`` attribute does the same
    without a rule; this rule is for flags with their own meaning and message.
"""


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    keys = _split(api.configuration.get("DISABLE_FLAGGED_USERS_KEYS", "") or "deleted")
    if any(user.app_metadata.get(key) is True for key in keys):
        raise UnauthorizedError("Access denied (account disabled)")
