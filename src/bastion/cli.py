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
import pydantic

from bastion.services import Services, build_services
from bastion.settings import Settings, load_settings

T = TypeVar("T")


def _settings() -> Settings:
    """The settings, or a readable error naming each wrong variable (never a traceback)."""
    try:
        return load_settings()
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"BASTION_{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}" for problem in error.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _run(work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with freshly built services, and close them."""
    settings = _settings()

    async def main() -> T:
        services = build_services(settings)
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
    from granian.constants import Interfaces, Loops

    from bastion.tenant.bootstrap import prepare

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    settings = _settings()
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
        # uvloop: in one run side by side, discovery +43% and ES256 client credentials +13%
        # requests per server core against asyncio's own loop (docs/performance.md).
        loop=Loops.uvloop,
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


# -- the outbox -------------------------------------------------------------


@main.group()
def outbox() -> None:
    """The outbox: emails and rules' queued requests waiting to be delivered (docs/email.md)."""


@outbox.command("list")
@click.option("--state", type=click.Choice(["pending", "sending", "sent", "logged", "failed"]), default=None)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def outbox_list(state: str | None, limit: int) -> None:
    """Entries, newest first: id, state, attempts, what it is, the last error."""
    from bastion.storage import deliveries

    async def work(services: Services):
        async with services.database.reader() as session:
            return (await deliveries.list_deliveries(session, page=0, per_page=limit, state=state)).items

    for entry in _run(work):
        what = (f"{entry.summary.get('to')}: {entry.summary.get('subject')}" if entry.kind == "email"
                else f"{entry.summary.get('method')} {entry.summary.get('url')}")
        line = f"{entry.id}  {entry.state:<7} {entry.attempts:>2}/{entry.max_attempts}  {what}"
        if entry.last_error:
            line += f"  ({entry.last_error})"
        click.echo(line)


@outbox.command("retry")
@click.argument("delivery_id")
def outbox_retry(delivery_id: str) -> None:
    """Give a failed entry another round of attempts (a running server sends it)."""
    from bastion.storage import deliveries

    async def work(services: Services):
        async with services.database.transaction() as session:
            return await deliveries.requeue_delivery(session, id=delivery_id, max_attempts=services.settings.outbox_max_attempts)

    if _run(work) is None:
        raise click.ClickException(f"no failed entry {delivery_id}")
    click.echo(f"{delivery_id} is pending again")


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
@click.option("--saml", is_flag=True, help="Rotate the SAML signing key and certificate instead.")
def keys_rotate(alg: str | None, saml: bool) -> None:
    """Make a new current signing key; the previous one stays published (JWKS, or SAML metadata)."""
    if saml:
        kid = _run(lambda services: services.saml_keys.rotate())
        click.echo(f"new SAML signing key and certificate {kid}")
        return
    kid = _run(lambda services: services.keyring.rotate(alg))
    click.echo(f"new signing key {kid}")


# -- rules ----------------------------------------------------------------


def _admin_errors(work: Callable[[Services], Awaitable[T]]) -> Callable[[Services], Awaitable[T]]:
    """Show the shared rule administration's errors (Management API errors) as CLI errors."""
    from bastion.errors import ManagementError

    async def wrapped(services: Services) -> T:
        try:
            return await work(services)
        except ManagementError as error:
            raise click.ClickException(error.message) from None

    return wrapped


def _read_json_object(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read {what} from {path}: {error}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} must hold a JSON object ({what})")
    return data


def _rule_summary(rule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "order": rule.order, "enabled": rule.enabled, "stage": rule.stage}


@main.group()
def rules() -> None:
    """Manage rules (Python, run on every login)."""


@rules.command("list")
def rules_list() -> None:
    """List the rules: order, enabled, name, id."""
    from bastion.storage import rules as rule_store

    async def work(services: Services) -> list:
        async with services.database.reader() as session:
            return await rule_store.all_rules(session)

    found = _run(work)
    if not found:
        click.echo("no rules")
        return
    stages = {r.stage for r in found} != {"login_success"}
    rows = [("ORDER", "ENABLED", "NAME", "ID") + (("STAGE",) if stages else ())]
    rows += [(str(r.order), "yes" if r.enabled else "no", r.name, r.id) + ((r.stage,) if stages else ()) for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@rules.command("add")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--order", type=int, default=None, help="Position in the pipeline (default: after the last rule).")
@click.option("--name", default=None, help="Default: the file name without its suffix ('_' and '.' become '-').")
@click.option("--disabled", is_flag=True, help="Store the rule disabled.")
def rules_add(file: str, order: int | None, name: str | None, disabled: bool) -> None:
    """Add the Python rule in FILE; its script is checked first (errors name their line)."""
    from bastion.rules import admin

    path = Path(file)
    try:
        script = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {file}: {error}") from None
    name = name or path.stem.replace("_", "-").replace(".", "-")

    async def work(services: Services) -> dict[str, Any]:
        async with services.database.transaction() as session:
            rule = await admin.create_rule(session, name=name, script=script, order=order, enabled=not disabled)
        services.tenant.invalidate()
        return _rule_summary(rule)

    click.echo(json.dumps(_run(_admin_errors(work)), indent=2))


def _set_enabled(rule_id: str, enabled: bool) -> None:
    from bastion.rules import admin

    async def work(services: Services):
        async with services.database.transaction() as session:
            rule = await admin.update_rule(session, rule_id, {"enabled": enabled})
        services.tenant.invalidate()
        return rule

    rule = _run(_admin_errors(work))
    state = "enabled" if rule.enabled else "disabled"
    note = " (JavaScript rules never run: rewrite it in Python)" if enabled and not rule.enabled else ""
    click.echo(f"rule {rule.id} ({rule.name}) is {state}{note}")


@rules.command("enable")
@click.argument("rule_id")
def rules_enable(rule_id: str) -> None:
    """Enable a rule."""
    _set_enabled(rule_id, True)


@rules.command("disable")
@click.argument("rule_id")
def rules_disable(rule_id: str) -> None:
    """Disable a rule."""
    _set_enabled(rule_id, False)


@rules.command("remove")
@click.argument("rule_id")
def rules_remove(rule_id: str) -> None:
    """Delete a rule."""
    from bastion.rules import admin

    async def work(services: Services) -> None:
        async with services.database.transaction() as session:
            await admin.delete_rule(session, rule_id)
        services.tenant.invalidate()

    _run(_admin_errors(work))
    click.echo(f"rule {rule_id} removed")


@rules.command("try")
@click.argument("rule_id", required=False)
@click.option("--user-id", default=None, help="A stored user.")
@click.option("--user-json", type=click.Path(dir_okay=False, exists=True), default=None, help="A file holding a user as JSON.")
@click.option("--context-json", type=click.Path(dir_okay=False, exists=True), default=None, help="A file holding context fields (JSON) to merge over the default context.")
@click.option("--client-id", default=None, help="Build the context for this stored client (default: a synthetic one).")
@click.option("--perform", is_flag=True, help="Carry out the effects (metadata updates, HTTP calls, email) instead of a dry run.")
def rules_try(rule_id: str | None, user_id: str | None, user_json: str | None, context_json: str | None, client_id: str | None, perform: bool) -> None:
    """Run RULE_ID (even if disabled), or the enabled pipeline, on a user; prints the outcome as JSON."""
    from bastion.rules import admin

    if (user_id is None) == (user_json is None):
        raise click.UsageError("give exactly one of --user-id and --user-json")
    user = _read_json_object(user_json, "a user") if user_json else None
    context = _read_json_object(context_json, "context fields") if context_json else None

    async def work(services: Services) -> dict[str, Any]:
        return await admin.try_rules(
            services, rule_id=rule_id, user_id=user_id, user=user, context=context, client_id=client_id, dry_run=not perform
        )

    click.echo(json.dumps(_run(_admin_errors(work)), indent=2, default=str))


@rules.command("test", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("path", required=False, type=click.UNPROCESSED)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def rules_test(path: str | None, pytest_args: tuple[str, ...]) -> None:
    """Run the rule tests in PATH with pytest and the bastion.testing plugin (docs/testing-rules.md).

    PATH defaults to the current folder; other arguments go to pytest (e.g. -k NAME, -x).
    The exit code is pytest's.
    """
    from bastion.testing.command import run_rule_tests

    sys.exit(run_rule_tests(path, list(pytest_args)))


@rules.group("config")
def rules_config() -> None:
    """Rule configuration values (api.configuration)."""


@rules_config.command("set")
@click.argument("key")
@click.argument("value")
def rules_config_set(key: str, value: str) -> None:
    """Set KEY to VALUE ('-' reads the value from standard input, keeping it out of the shell history)."""
    from bastion.rules import admin

    if value == "-":
        value = sys.stdin.read().rstrip("\n")

    async def work(services: Services) -> None:
        async with services.database.transaction() as session:
            await admin.set_rule_config(session, services.sealer, key=key, value=value)
        services.tenant.invalidate()

    _run(_admin_errors(work))
    click.echo(f"rules config {key} set")


@rules_config.command("remove")
@click.argument("key")
def rules_config_remove(key: str) -> None:
    """Delete KEY."""
    from bastion.rules import admin

    async def work(services: Services) -> None:
        async with services.database.transaction() as session:
            await admin.delete_rule_config(session, key=key)
        services.tenant.invalidate()

    _run(_admin_errors(work))
    click.echo(f"rules config {key} removed")


# -- logs -----------------------------------------------------------------


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many recent events.")
@click.option("--execution", "execution_id", default=None, help="Show this rules execution record (details.rules_execution_id) as JSON.")
def logs(limit: int, execution_id: str | None) -> None:
    """Recent log events, newest first: date, type, description, user (and the rules execution id)."""
    from bastion.rules.admin import load_execution
    from bastion.storage import log_events

    if execution_id:
        async def one(services: Services):
            async with services.database.reader() as session:
                return await load_execution(session, execution_id)

        execution = _run(one)
        if execution is None:
            raise click.ClickException(f"no rules execution {execution_id}")
        click.echo(json.dumps(execution, indent=2, default=str))
        return

    async def recent(services: Services):
        async with services.database.reader() as session:
            return (await log_events.list_log_events(session, page=0, per_page=limit)).items

    for event in _run(recent):
        date = event.date.isoformat(timespec="seconds").replace("+00:00", "Z")
        user = event.user_name or event.user_id or "-"
        line = f"{date}  {event.type:<7} {event.description or '-'}  {user}"
        execution = (event.details or {}).get("rules_execution_id")
        if execution:
            line += f"  rules_execution={execution}"
        click.echo(line)

from bastion.deploy.cli import deploy_group  # noqa: E402  (docs/deploy.md)
main.add_command(deploy_group)

if __name__ == "__main__":
    sys.exit(main())
