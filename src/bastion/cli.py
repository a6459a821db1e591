"""The `bastion` command line (click)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bastion.services import Services, build_services
from bastion.settings import load_settings

T = TypeVar("T")


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with freshly built services, and close them."""

    async def main() -> T:
        services = build_services(load_settings())
        try:
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(main())


@click.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), help="A TOML settings file (BASTION_CONFIG_FILE).")
def main(config_file: str | None) -> None:
    """Bastion: a self-hosted identity provider with Auth0-compatible rules."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config_file:
        os.environ["BASTION_CONFIG_FILE"] = str(Path(config_file).resolve())


@main.command()
def migrate() -> None:
    """Apply pending database migrations and create what a tenant needs (keys, default connection)."""
    from bastion.tenant.bootstrap import prepare

    _run(prepare)
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="PEM certificate (serve https).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="PEM private key for --tls-cert.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations at start-up.")
def serve(host: str, port: int, workers: int, tls_cert: str | None, tls_key: str | None, no_migrate: bool) -> None:
    """Serve Bastion with the production server (granian)."""
    from granian import Granian
    from granian.constants import Interfaces

    from bastion.tenant.bootstrap import prepare

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    settings = load_settings()
    # Workers are separate processes: make sure they all use the same master key.
    os.environ["BASTION_SECRET_KEY"] = settings.secret_key or ""
    _run(lambda services: prepare(services, run_migrations=not no_migrate))
    scheme = "https" if tls_cert else "http"
    click.echo(f"Bastion listening on {scheme}://{host}:{port} (issuer {settings.issuer}), {workers} worker(s)")
    server = Granian(
        "bastion.app:app_from_environment",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        ssl_cert=Path(tls_cert) if tls_cert else None,
        ssl_key=Path(tls_key) if tls_key else None,
        log_access=False,
        respawn_failed_workers=True,
    )
    server.serve()


@main.command()
def demo() -> None:
    """Seed the demo application and user (what `make run` does)."""
    from bastion.demo import seed_demo
    from bastion.tenant.bootstrap import prepare

    async def work(services: Services) -> dict[str, str]:
        await prepare(services)
        return await seed_demo(services)

    info = _run(work)
    click.echo(
        f"\nDemo ready. Open {info['url']} and log in as {info['email']} / {info['password']}\n"
        "(start the server with BASTION_DEMO=true so /demo is served).\n"
    )


@main.command()
@click.option("--grace-hours", default=24, show_default=True, help="Keep expired rows this long (replays stay recognised).")
def janitor(grace_hours: int) -> None:
    """Delete expired codes, login transactions, SSO sessions and refresh tokens."""
    from datetime import timedelta

    from bastion.storage.janitor import purge_expired

    async def work(services: Services) -> dict[str, int]:
        async with services.database.transaction() as session:
            return await purge_expired(session, grace=timedelta(hours=grace_hours))

    for table, count in _run(work).items():
        click.echo(f"{table}: {count} deleted")


# -- users ----------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--connection", default="Username-Password-Authentication", show_default=True)
@click.option("--username", default=None)
@click.option("--verified/--not-verified", default=False, help="Mark the email as verified.")
def users_create(email: str, password: str, connection: str, username: str | None, verified: bool) -> None:
    """Create a database user."""
    from bastion.storage import connections as connection_store
    from bastion.tenant.users import UserConflict, WeakPassword, create_database_user, user_to_json

    async def work(services: Services) -> dict[str, Any]:
        async with services.database.transaction() as session:
            if await connection_store.find_connection(session, name=connection) is None:
                raise click.ClickException(f"no connection named {connection}")
            try:
                user = await create_database_user(
                    session, connection=connection, email=email, password=password, username=username, email_verified=verified
                )
            except (UserConflict, WeakPassword) as error:
                raise click.ClickException(str(error)) from None
        return user_to_json(user)

    click.echo(json.dumps(_run(work), indent=2))


# -- clients --------------------------------------------------------------


@main.group()
def clients() -> None:
    """Manage clients (applications)."""


@clients.command("create")
@click.option("--name", required=True)
@click.option("--type", "app_type", type=click.Choice(["regular_web", "spa", "native", "non_interactive"]), default="regular_web", show_default=True)
@click.option("--callback", "callbacks", multiple=True, help="Allowed redirect URI (repeatable).")
@click.option("--logout-url", "logout_urls", multiple=True, help="Allowed logout URL (repeatable).")
@click.option("--grant-type", "grant_types", multiple=True, help="Grant type (repeatable; default: Auth0's for the type).")
@click.option("--auth-method", type=click.Choice(["none", "client_secret_post", "client_secret_basic"]), default=None)
@click.option("--api", "apis", multiple=True, help="Authorize client credentials for this API identifier, with all its scopes (repeatable).")
def clients_create(name, app_type, callbacks, logout_urls, grant_types, auth_method, apis) -> None:
    """Create a client; prints its id and secret. The default database connection is enabled for it."""
    from bastion.security.handles import new_id
    from bastion.storage import clients as client_store
    from bastion.storage import resource_servers as api_store
    from bastion.tenant.bootstrap import DEFAULT_CONNECTION, enable_connection_for_client
    from bastion.tenant.clients import create_client

    async def work(services: Services) -> dict[str, Any]:
        async with services.database.transaction() as session:
            client, secret = await create_client(
                session, services.sealer, name=name, app_type=app_type, callbacks=list(callbacks),
                allowed_logout_urls=list(logout_urls), grant_types=list(grant_types) or None,
                token_endpoint_auth_method=auth_method,
            )
            if app_type != "non_interactive":
                await enable_connection_for_client(session, connection_name=DEFAULT_CONNECTION, client_id=client.client_id)
            for identifier in apis:
                api = await api_store.find_resource_server(session, identifier=identifier)
                if api is None:
                    raise click.ClickException(f"no API with identifier {identifier}")
                await client_store.insert_client_grant(
                    session, id=new_id("cgr_"), client_id=client.client_id, audience=identifier, scope=sorted(api.scope_values)
                )
        return {"client_id": client.client_id, "client_secret": secret, "name": client.name, "app_type": app_type}

    click.echo(json.dumps(_run(work), indent=2))


# -- keys -----------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage signing keys."""


@keys.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256", "EdDSA"]), default=None, help="Default: BASTION_SIGNING_ALG.")
def keys_rotate(alg: str | None) -> None:
    """Make a new current signing key; the previous one stays in the JWKS."""
    kid = _run(lambda services: services.keyring.rotate(alg))
    click.echo(f"new signing key {kid}")


if __name__ == "__main__":
    sys.exit(main())
