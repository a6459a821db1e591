"""What every tenant has from its first start, created idempotently:

- the signing keys (one current key per algorithm);
- the default database connection `Username-Password-Authentication`;
- the Management API as a system resource server (`{issuer}/api/v2/`);
- the bootstrap management client from BASTION_BOOTSTRAP_CLIENT_ID/_SECRET, if set
  (as Keycloak's bootstrap admin client), with a client grant for every scope.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.handles import digest, new_id
from bastion.services import Services
from bastion.storage import clients as client_store
from bastion.storage import connections as connection_store
from bastion.storage import resource_servers as api_store
from bastion.storage.migrate import migrate
from bastion.tenant.clients import create_client, rotate_client_secret

__all__ = ["DEFAULT_CONNECTION", "MANAGEMENT_SCOPES", "prepare", "ensure_default_connection", "enable_connection_for_client"]

log = logging.getLogger("bastion.bootstrap")

DEFAULT_CONNECTION = "Username-Password-Authentication"

_RESOURCES = (
    "users", "users_app_metadata", "clients", "client_keys", "client_grants", "resource_servers", "connections", "logs", "rules",
    "rules_configs", "user_blocks", "grants", "guardian_enrollments", "authentication_methods", "roles", "groups",
    "log_streams", "email_templates", "user_tickets",
)
MANAGEMENT_SCOPES = [f"{verb}:{resource}" for resource in _RESOURCES for verb in ("read", "create", "update", "delete")] + [
    "read:tenant_settings", "update:tenant_settings",  # Auth0 has no create: or delete: for these
    "read:user_idp_tokens",  # upstream providers' access tokens in GET /users/{id}
]


async def prepare(services: Services, *, run_migrations: bool = True) -> None:
    """Bring a database to a servable state. Idempotent; run before the server's workers start."""
    if run_migrations:
        await migrate(services.database)
    created = await services.keyring.ensure_keys()
    if created:
        log.info("generated signing keys %s", ", ".join(created))
    if await services.saml_keys.ensure_key():
        log.info("generated the SAML signing key and certificate")
    async with services.database.transaction() as session:
        await ensure_default_connection(session)
        await _ensure_management_api(session, services)
        await _ensure_bootstrap_client(session, services)
    services.tenant.invalidate()


async def ensure_default_connection(session: AsyncSession):
    connection = await connection_store.find_connection(session, name=DEFAULT_CONNECTION)
    if connection is None:
        connection = await connection_store.insert_connection(
            session,
            id=new_id("con_"),
            name=DEFAULT_CONNECTION,
            strategy="auth0",
            options={"passwordPolicy": "fair", "brute_force_protection": True, "disable_signup": False},
            enabled_clients=[],
        )
    return connection


async def enable_connection_for_client(session: AsyncSession, *, connection_name: str, client_id: str) -> None:
    connection = await connection_store.find_connection(session, name=connection_name)
    if connection and client_id not in connection.enabled_clients:
        await connection_store.update_connection(
            session, id=connection.id, changes={"enabled_clients": [*connection.enabled_clients, client_id]}
        )


# Auth0's own name for it: Auth0's tools recognise the Management API by this name and leave it
# alone (auth0-deploy-cli filters it out of imports and exports).
MANAGEMENT_API_NAME = "Auth0 Management API"


async def _ensure_management_api(session: AsyncSession, services: Services) -> None:
    audience = services.settings.management_audience
    existing = await api_store.find_resource_server(session, identifier=audience)
    scopes = [{"value": s, "description": s.replace(":", " ").replace("_", " ").capitalize()} for s in MANAGEMENT_SCOPES]
    if existing is None:
        await api_store.insert_resource_server(
            session,
            id=new_id(length=24),
            name=MANAGEMENT_API_NAME,
            identifier=audience,
            scopes=scopes,
            signing_alg="RS256",
            token_lifetime=86400,
            allow_offline_access=False,
            skip_consent_for_verifiable_first_party_clients=False,
            is_system=True,
        )
    else:
        changes = {k: v for k, v in (("scopes", scopes), ("name", MANAGEMENT_API_NAME)) if getattr(existing, k) != v}
        if changes:
            await api_store.update_resource_server(session, id=existing.id, changes=changes)


async def _ensure_bootstrap_client(session: AsyncSession, services: Services) -> None:
    settings = services.settings
    if not settings.bootstrap_client_id or not settings.bootstrap_client_secret:
        return
    client_id = settings.bootstrap_client_id
    client = await client_store.get_client(session, client_id=client_id)
    if client is None:
        await create_client(
            session,
            services.sealer,
            name="Bastion bootstrap management client",
            app_type="non_interactive",
            client_id=client_id,
            client_secret=settings.bootstrap_client_secret,
            token_endpoint_auth_method="client_secret_post",
            grant_types=["client_credentials"],
            description="Created from BASTION_BOOTSTRAP_CLIENT_ID at start-up.",
        )
        log.info("created the bootstrap management client %s", client_id)
    elif client.client_secret_digest != digest(settings.bootstrap_client_secret):
        await rotate_client_secret(session, services.sealer, client_id=client_id, secret=settings.bootstrap_client_secret)
        log.info("updated the bootstrap management client's secret from BASTION_BOOTSTRAP_CLIENT_SECRET")
    audience = settings.management_audience
    grant = await client_store.find_client_grant(session, client_id=client_id, audience=audience)
    if grant is None:
        await client_store.insert_client_grant(
            session, id=new_id("cgr_"), client_id=client_id, audience=audience, scope=list(MANAGEMENT_SCOPES)
        )
    elif set(grant.scope) != set(MANAGEMENT_SCOPES):
        await client_store.update_client_grant(session, id=grant.id, scope=list(MANAGEMENT_SCOPES))
