"""Set the JWT ID (``jti``) of the access token to a random UUID (version 4).

What it does
    Sets ``user.jti`` to ``str(uuid.uuid4())``; Bastion uses it as the ``jti`` claim of
    the access token issued by this login, so the token can be identified later
    (for example to deny-list it, keyed by ``aud`` and ``jti``).

Replaces the Auth0 use case
    "Set the JWT ID (JTI) of an Access Token" - Auth0 docs:
    api-auth/blacklists-vs-grants (#blacklists), which runs
    ``user.jti = require('uuid').v4()``.

Configuration (api.configuration)
    None.

Adapt
    Nothing to configure. If you record the ``jti`` somewhere (to revoke tokens later),
    do it from the service that receives the token, not from this rule: rules also
    run on the refresh-token and password grants, each of which issues a new ``jti``.
"""

import uuid


def rule(user, context, api):
    user.jti = str(uuid.uuid4())
