"""A short-lived, per-process cache of what every token request reads: clients,
APIs (resource servers), client grants, connections, the enabled rules and the
rules' configuration values, whether any role exists, and the tenant's settings.

Entries live `ttl` seconds (BASTION_CACHE_TTL, default 5 s), so a change made on
another server process is seen within that time; changes made through this
process's Management API invalidate at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bastion.security.sealing import Sealer
from bastion.storage import clients, connections, email_templates, groups, resource_servers, roles, rules, tenant_settings
from bastion.storage.database import Database
from bastion.storage.records import Client, ClientGrant, Connection, EmailTemplate, ResourceServer, Rule

__all__ = ["TenantCache", "RULE_CONFIG_PURPOSE"]

RULE_CONFIG_PURPOSE = "rule-config"

_MISSING = object()


class TenantCache:
    def __init__(self, database: Database, sealer: Sealer, *, ttl: float):
        self._database = database
        self._sealer = sealer
        self._ttl = ttl
        self._entries: dict[tuple, tuple[float, Any]] = {}
        self._generation = 0  # bumped by invalidate(): a load that started before must not be cached

    async def _get(self, key: tuple, load: Callable[[Any], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        generation = self._generation
        async with self._database.reader() as session:
            value = await load(session)
        if generation == self._generation:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now + self._ttl, value)
        return value

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def client(self, client_id: str) -> Client | None:
        return await self._get(("client", client_id), lambda s: clients.get_client(s, client_id=client_id))

    async def resource_server(self, identifier: str) -> ResourceServer | None:
        return await self._get(
            ("api", identifier), lambda s: resource_servers.find_resource_server(s, identifier=identifier)
        )

    async def client_grant(self, client_id: str, audience: str) -> ClientGrant | None:
        return await self._get(
            ("grant", client_id, audience),
            lambda s: clients.find_client_grant(s, client_id=client_id, audience=audience),
        )

    async def connection(self, name: str) -> Connection | None:
        return await self._get(("connection", name), lambda s: connections.find_connection(s, name=name))

    async def connections_of(self, strategies: tuple[str, ...]) -> list[Connection]:
        """The connections of these strategies (the login page's buttons for upstream providers), oldest first."""

        async def load(session) -> list[Connection]:
            page = await connections.list_connections(session, page=0, per_page=100, strategies=list(strategies))
            return page.items

        return await self._get(("connections", strategies), load)

    async def has_roles(self) -> bool:
        """Whether the tenant has any role: a login looks up its user's roles only then."""
        return await self._get(("has-roles",), lambda s: roles.any_roles(s))

    async def has_groups(self) -> bool:
        """Whether the tenant has any group (docs/access-control.md): rules see groups only then."""
        return await self._get(("has-groups",), lambda s: groups.any_groups(s))

    async def enabled_rules(self, stage: str = "login_success") -> list[Rule]:
        return await self._get(("rules", stage), lambda s: rules.enabled_rules(s, stage=stage))

    async def rule_configuration(self) -> dict[str, str]:
        """The rules' configuration values, unsealed."""

        async def load(session) -> dict[str, str]:
            sealed = await rules.rule_config_values(session)
            return {key: self._sealer.open(value, purpose=RULE_CONFIG_PURPOSE).decode() for key, value in sealed.items()}

        return await self._get(("rule-configuration",), load)

    async def email_template(self, name: str) -> EmailTemplate | None:
        """The operator's template set through /api/v2/email-templates, if any."""
        return await self._get(("email-template", name), lambda s: email_templates.get_email_template(s, template=name))

    async def tenant_settings(self) -> dict[str, Any]:
        """What the tenant set through /api/v2/tenants/settings (tenant/tenant_settings.py adds the
        defaults). Callers must not change the document they get."""
        return await self._get(("tenant-settings",), tenant_settings.get_tenant_settings)
