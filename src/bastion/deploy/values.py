"""Rules configuration values in a deploy: which environment variable a key's value may come
from, and the keyed digest a deployment keeps instead of the value.

    environment_problem(key, prefix)   why PREFIX+KEY may not be read (None: it may)
    ValueDigests(master_key).of(k, v)  HMAC-SHA256 of (key, value) under a key derived from
                                       BASTION_SECRET_KEY

Why a bundle may not name any variable: a bundle comes from whoever can push to the rules
repository, and whatever it names lands in `api.configuration`, which a rule can send anywhere.
The server's own settings live in the same environment (BASTION_SECRET_KEY, the database URL),
and `bastion serve` even puts the master key there for its workers. So a key starting with
`BASTION_` is refused whatever the prefix, and so is a variable starting with `BASTION_`,
except under `BASTION_RULES_CONFIG_`: that namespace is kept for rules' values and no setting
uses it (tests/test_deploy.py checks that every setting stays out of it). The webhooks always
read under a prefix (BASTION_DEPLOY_ENV_PREFIX), so a push can reach only variables an
operator put there for rules.

Why digests: drift must tell that a value was changed by hand since a deployment, yet a
deployment may never hold a value (anyone reading the deployments table or a backup would
have every secret). A plain hash of a short value can be guessed offline; an HMAC under a key
only the server holds cannot. The key name is part of what is digested, so two keys holding
one value do not show it by having equal digests.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SERVER_PREFIX", "RULES_CONFIG_PREFIX", "environment_problem", "ValueDigests"]

SERVER_PREFIX = "BASTION_"  # the server's settings (pydantic-settings reads them case-insensitively)
RULES_CONFIG_PREFIX = "BASTION_RULES_CONFIG_"  # kept for rules' values: no setting starts with it


def environment_problem(key: str, prefix: str) -> str | None:
    """Why the value of `key` may not be read from the variable `prefix` + `key`; None when it may."""
    if key.upper().startswith(SERVER_PREFIX):
        return (f"the key {key} is refused: a key may not start with {SERVER_PREFIX} "
                "(the server's own settings are never read into rules configuration)")
    variable = (prefix + key).upper()
    if variable.startswith(SERVER_PREFIX) and not variable.startswith(RULES_CONFIG_PREFIX):
        return (f"the environment variable {prefix + key} is refused: names starting with {SERVER_PREFIX} are "
                f"the server's own settings (rules' values may live under {RULES_CONFIG_PREFIX})")
    return None


class ValueDigests:
    """What a deployment records of each configuration value: never the value, only a digest
    that takes the server's secret to compute."""

    def __init__(self, master_key: str):
        self._key = hashlib.sha256(b"bastion-deploy-config-digest-v1|" + master_key.encode()).digest()

    def of(self, key: str, value: str) -> str:
        return hmac.new(self._key, key.encode() + b"\x00" + value.encode(), hashlib.sha256).hexdigest()
