"""Give new users default user_metadata values, and save them.

What it does
    For each configured default (``{"preferred_language": "en"}`` unless configured
    otherwise) that the user's ``user_metadata`` does not have yet, saves it with
    ``api.users.update_user_metadata`` (top-level keys merge; other keys are kept).
    Values the user already has, whatever they are, are never overwritten, and when
    nothing is missing no write is made. Later rules, and the next logins, see the
    saved values.

Replaces the Auth0 use case
    "Update user metadata" - Auth0 docs: users/references/user-data-storage-scenario
    (#user-metadata), which defaults ``user_metadata.displayName`` to ``'user'`` and
    persists it with ``auth0.users.updateUserMetadata``.

Configuration (api.configuration)
    DEFAULT_USER_METADATA  optional. A JSON object of the defaults, e.g.
                           ``{"preferred_language": "en", "newsletter": false}``.
                           Unset: ``{"preferred_language": "en"}``.

Adapt
    Keep defaults small and about the user's preferences; data that drives
    authorization belongs in ``app_metadata``. Rules run on every login and token
    refresh: this rule writes only when a key is missing, so it costs one write per
    user, not one per login.
"""

import json

DEFAULTS = {"preferred_language": "en"}


async def rule(user, context, api):
    configured = api.configuration.get("DEFAULT_USER_METADATA", "")
    defaults = json.loads(configured) if configured.strip() else DEFAULTS
    if not isinstance(defaults, dict):
        raise ValueError("DEFAULT_USER_METADATA must be a JSON object")

    missing = {key: value for key, value in defaults.items() if key not in user.user_metadata}
    if missing:
        await api.users.update_user_metadata(user.user_id, missing)
