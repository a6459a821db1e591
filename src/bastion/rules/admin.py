"""Administering rules: what the Management API (management/rules.py) and the CLI
(`bastion rules ...`) share, so each check and default is written once.

    create_rule / update_rule / delete_rule    Auth0's validation, order defaults, 409 conflicts
    set_rule_config / delete_rule_config       values sealed, never read back
    try_rules                                  run one rule or the pipeline on a stored or
                                               sample user (a dry run by default) and store
                                               the execution record

Errors are ManagementError (Auth0's status, message and errorCode): the API answers
them as they are, the CLI prints their message.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.errors import ManagementError
from bastion.events import EventType, record_event
from bastion.outbox import delivery_json
from bastion.rules.context import RequestInfo, now_ms, rule_context, rule_user
from bastion.rules.engine import RuleRun
from bastion.rules.validation import RuleScriptError, check_script
from bastion.security.handles import new_id
from bastion.security.sealing import Sealer
from bastion.services import Services
from bastion.storage import clients as client_store
from bastion.storage import deliveries as delivery_store
from bastion.storage import roles as role_store
from bastion.storage import rules as rule_store
from bastion.storage import users as user_store
from bastion.storage.records import Client, Connection, Delivery, Identity, Rule, RuleExecution, User
from bastion.tenant.cache import RULE_CONFIG_PURPOSE

__all__ = [
    "STAGES",
    "LANGUAGES",
    "NAME_PATTERN",
    "KEY_PATTERN",
    "rule_json",
    "execution_json",
    "load_execution",
    "check_rule_name",
    "check_config_key",
    "create_rule",
    "update_rule",
    "delete_rule",
    "get_rule",
    "set_rule_config",
    "delete_rule_config",
    "try_rules",
    "try_answer",
    "TRY_USER_ID",
    "TRY_CLIENT_ID",
]

STAGES = ("login_success", "login_failure", "pre_authorize")
LANGUAGES = ("python", "javascript")
NAME_PATTERN = r"^[^-\s][a-zA-Z0-9-\s]+[^-\s]$"  # Auth0's
KEY_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_NAME_LENGTH = 255
MAX_KEY_LENGTH = 128
MAX_ORDER = 2**31 - 1

TRY_USER_ID = "auth0|try"
TRY_CLIENT_ID = "bastion-rule-try"
TRY_CONNECTION = "Username-Password-Authentication"

_NAME = re.compile(NAME_PATTERN)
_KEY = re.compile(KEY_PATTERN)

NO_RULE = "The rule does not exist."
ORDER_CONFLICT = "A rule with the same order already exists"
NAME_CONFLICT = "A rule with the same name already exists"


def _invalid(message: str) -> ManagementError:
    return ManagementError(400, message, "invalid_body")


def _check_text(value: Any, field: str) -> None:
    """No NUL character and no lone surrogate anywhere in `value` (no database column can hold them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, field)
            _check_text(item, field)
    elif isinstance(value, list):
        for item in value:
            _check_text(item, field)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid(f"Payload validation error: 'Invalid UTF-8' on property {field}.") from None
        if "\x00" in value:
            raise _invalid(f"Payload validation error: 'NUL characters are not allowed' on property {field}.")


def _no_rule() -> ManagementError:
    return ManagementError(404, NO_RULE, "inexistent_rule")


def _conflict(message: str) -> ManagementError:
    return ManagementError(409, message, "rule_conflict")


# -- shapes ------------------------------------------------------------------


def rule_json(rule: Rule) -> dict[str, Any]:
    """Auth0's rule object."""
    return {
        "id": rule.id,
        "name": rule.name,
        "script": rule.script,
        "order": rule.order,
        "enabled": rule.enabled,
        "stage": rule.stage,
        "language": rule.language,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def execution_json(execution: RuleExecution, deliveries: list[Delivery] | None = None) -> dict[str, Any]:
    """The execution record; `deliveries`: what became of the emails and requests its rules queued
    (the outbox entries the effects name by `delivery_id`)."""
    body = {
        "id": execution.id,
        "created_at": _iso(execution.created_at),
        "protocol": execution.protocol,
        "client_id": execution.client_id,
        "user_id": execution.user_id,
        "outcome": execution.outcome,
        "duration_ms": execution.duration_ms,
        "dry_run": execution.dry_run,
        "rules": execution.rules,
        "effects": execution.effects,
        "error": execution.error,
    }
    if deliveries is not None:
        body["deliveries"] = [delivery_json(d) for d in deliveries]
    return body


async def load_execution(session: AsyncSession, execution_id: str) -> dict[str, Any] | None:
    """The execution record with its outbox entries, as the API and the CLI show it."""
    execution = await rule_store.get_rule_execution(session, id=execution_id)
    if execution is None:
        return None
    deliveries = await delivery_store.deliveries_of_executions(session, execution_ids=[execution.id])
    return execution_json(execution, deliveries)


# -- checks ------------------------------------------------------------------


def check_rule_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or "\x00" in name or not _NAME.match(name):
        raise _invalid(
            f"Payload validation error: 'String does not match pattern {NAME_PATTERN}: {name}' on property name "
            "(The name of the rule. Can only contain alphanumeric characters, spaces and '-'. "
            "Can neither start nor end with '-' or spaces)."
        )


def check_config_key(key: str) -> None:
    if len(key) > MAX_KEY_LENGTH or not _KEY.match(key):
        raise _invalid(f"Payload validation error: 'String does not match pattern {KEY_PATTERN}: {key}' on property key.")


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
        raise _invalid(f"Payload validation error: 'order must be an integer from 0 to {MAX_ORDER}' on property order.")


def _check_script(script: str, language: str) -> None:
    if not isinstance(script, str) or not script.strip():
        raise _invalid("Payload validation error: 'String is too short (0 chars), minimum 1' on property script.")
    _check_text(script, "script")
    if language != "python":
        return  # stored, never run (and stored disabled)
    try:
        check_script(script)
    except RuleScriptError as error:
        raise _invalid(f"Invalid script: {error}") from None


def _stage(stage: str) -> str:
    if stage not in STAGES:
        raise _invalid(f"Payload validation error: 'No enum match for: \"{stage}\"' on property stage.")
    return stage


def _language(language: str) -> str:
    if language not in LANGUAGES:
        raise _invalid(f"Payload validation error: 'No enum match for: \"{language}\"' on property language.")
    return language


async def _check_conflicts(session: AsyncSession, *, rule_id: str | None, name: str | None, stage: str, order: int | None) -> None:
    if name is not None:
        same_name = await rule_store.find_rule_by_name(session, name=name)
        if same_name is not None and same_name.id != rule_id:
            raise _conflict(NAME_CONFLICT)
    if order is not None:
        same_order = await rule_store.find_rule_by_order(session, stage=stage, order=order)
        if same_order is not None and same_order.id != rule_id:
            raise _conflict(ORDER_CONFLICT)


def _integrity_conflict(error: IntegrityError) -> ManagementError:
    """A concurrent change won the race that the checks above lost: name the constraint it hit."""
    return _conflict(ORDER_CONFLICT if "order" in str(error.orig).lower() else NAME_CONFLICT)


# -- rules -------------------------------------------------------------------


async def get_rule(session: AsyncSession, rule_id: str) -> Rule:
    rule = await rule_store.get_rule(session, id=rule_id)
    if rule is None:
        raise _no_rule()
    return rule


async def create_rule(
    session: AsyncSession,
    *,
    name: str,
    script: str,
    order: int | None = None,
    enabled: bool | None = None,
    stage: str | None = None,
    language: str | None = None,
) -> Rule:
    """Auth0's POST /rules: `order` defaults to the stage's highest plus one; JavaScript rules are stored disabled."""
    stage = _stage(stage or "login_success")
    language = _language(language or "python")
    check_rule_name(name)
    _check_script(script, language)
    if order is None:
        order = (await rule_store.max_rule_order(session, stage=stage) or 0) + 1
    _check_order(order)
    await _check_conflicts(session, rule_id=None, name=name, stage=stage, order=order)
    enabled = (True if enabled is None else bool(enabled)) and language == "python"
    try:
        return await rule_store.insert_rule(
            session, id=new_id("rul_"), name=name, script=script, order=order, enabled=enabled, stage=stage, language=language
        )
    except IntegrityError as error:
        raise _integrity_conflict(error) from None


async def update_rule(session: AsyncSession, rule_id: str, changes: dict[str, Any]) -> Rule:
    """Auth0's PATCH /rules/{id}: `name`, `script`, `order`, `enabled` (the stage never changes)."""
    current = await get_rule(session, rule_id)
    changes = {k: v for k, v in changes.items() if k in ("name", "script", "order", "enabled") and v is not None}
    if "name" in changes:
        check_rule_name(changes["name"])
    if "script" in changes:
        _check_script(changes["script"], current.language)
    if "order" in changes:
        _check_order(changes["order"])
    if "enabled" in changes:
        changes["enabled"] = bool(changes["enabled"]) and current.language == "python"
    changes = {k: v for k, v in changes.items() if getattr(current, k) != v}
    if not changes:
        return current
    await _check_conflicts(session, rule_id=rule_id, name=changes.get("name"), stage=current.stage, order=changes.get("order"))
    try:
        rule = await rule_store.update_rule(session, id=rule_id, changes=changes)
    except IntegrityError as error:
        raise _integrity_conflict(error) from None
    if rule is None:
        raise _no_rule()
    return rule


async def delete_rule(session: AsyncSession, rule_id: str) -> None:
    if not await rule_store.delete_rule(session, id=rule_id):
        raise _no_rule()


# -- rule configuration ------------------------------------------------------


async def set_rule_config(session: AsyncSession, sealer: Sealer, *, key: str, value: str) -> None:
    check_config_key(key)
    if not isinstance(value, str) or not value:
        raise _invalid("Payload validation error: 'String is too short (0 chars), minimum 1' on property value.")
    _check_text(value, "value")
    await rule_store.put_rule_config(session, key=key, value_sealed=sealer.seal(value, purpose=RULE_CONFIG_PURPOSE))


async def delete_rule_config(session: AsyncSession, *, key: str) -> None:
    if not await rule_store.delete_rule_config(session, key=key):
        raise ManagementError(404, "The rules config does not exist.", "inexistent_rules_config")


# -- trying rules ------------------------------------------------------------


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` over `base`; nested objects merge key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sample_user(data: dict[str, Any]) -> dict[str, Any]:
    """A user given as JSON, with what every rule may read filled in."""
    user = dict(data)
    if not user.get("user_id"):
        user["user_id"] = TRY_USER_ID
    for key, default in (("app_metadata", {}), ("user_metadata", {}), ("identities", []), ("multifactor", [])):
        if user.get(key) is None:
            user[key] = default
    return user


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _sample_record(user: dict[str, Any]) -> User:
    """A User record for a sample user (rule_context reads the login counters from it)."""
    now = datetime.now(timezone.utc)
    identities = user.get("identities") if isinstance(user.get("identities"), list) else []
    first = identities[0] if identities and isinstance(identities[0], dict) else {}
    connection = str(first.get("connection") or TRY_CONNECTION)
    logins = user.get("logins_count")
    return User(
        user_id=str(user["user_id"]), connection=connection, email=user.get("email"),
        email_verified=bool(user.get("email_verified")), username=user.get("username"),
        phone_number=user.get("phone_number"), phone_verified=bool(user.get("phone_verified")), password_hash=None,
        name=user.get("name"), nickname=user.get("nickname"), given_name=user.get("given_name"),
        family_name=user.get("family_name"), picture=user.get("picture"),
        app_metadata=user["app_metadata"] if isinstance(user["app_metadata"], dict) else {},
        user_metadata=user["user_metadata"] if isinstance(user["user_metadata"], dict) else {},
        blocked=bool(user.get("blocked")), created_at=_parse_time(user.get("created_at")) or now,
        updated_at=_parse_time(user.get("updated_at")) or now, last_login=_parse_time(user.get("last_login")),
        last_ip=user.get("last_ip"), logins_count=logins if isinstance(logins, int) and not isinstance(logins, bool) else 1,
        last_password_reset=None,
        identities=[Identity(provider=str(first.get("provider") or "auth0"), connection=connection,
                             external_id=str(user["user_id"]).partition("|")[2] or str(user["user_id"]),
                             is_social=bool(first.get("isSocial") or first.get("is_social")), profile_data={})],
    )


def _sample_client() -> Client:
    now = datetime.now(timezone.utc)
    return Client(
        client_id=TRY_CLIENT_ID, name="Rule try", description="A synthetic application for trying rules",
        app_type="regular_web", is_first_party=True, callbacks=[], allowed_logout_urls=[], web_origins=[],
        allowed_origins=[], grant_types=["authorization_code"], token_endpoint_auth_method="client_secret_post",
        client_secret_sealed=None, client_secret_digest=None, client_metadata={}, jwt_configuration={},
        refresh_token={}, addons={}, is_system=False, created_at=now, updated_at=now,
    )


def _sample_connection(name: str) -> Connection:
    return Connection(
        id="con_try", name=name, strategy="auth0", options={}, enabled_clients=[], is_domain_connection=False,
        created_at=datetime.now(timezone.utc),
    )


def try_answer(run: RuleRun, *, dry_run: bool) -> dict[str, Any]:
    """What `try` shows: the run's outcome, the resulting user and context, per-rule records and effects.

    `dry_run` is what was asked: a run with no rule to run does not carry the flag."""
    outcome = run.outcome if run.status == "ok" else None
    return {
        "status": run.status,
        "message": run.message,
        "user": run.user,
        "context": run.context,
        "tokens": {
            "id_token_claims": outcome.id_token_claims,
            "access_token_claims": outcome.access_token_claims,
            "scopes": outcome.scopes,
            "jti": outcome.jti,
        } if outcome else None,
        "warnings": run.outcome.warnings if run.outcome else [],
        "records": run.records,
        "effects": run.effects,
        "duration_ms": run.duration_ms,
        "dry_run": dry_run,
        "execution_id": run.execution_id,
    }


async def try_rules(
    services: Services,
    *,
    rule_id: str | None = None,
    rule_ids: list[str] | None = None,
    user_id: str | None = None,
    user: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    client_id: str | None = None,
    dry_run: bool = True,
    request: RequestInfo | None = None,
    record: Callable[[AsyncSession, RuleRun, dict | None], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Run rules outside a login and store the execution record.

    Which rules: `rule_id` (that rule, even if disabled), else `rule_ids` (those rules, in
    pipeline order, even if disabled), else the enabled login_success pipeline.
    Which user: the stored `user_id`, or `user` (a JSON user; defaults filled in).
    `context` is merged over the context a login of that user on `client_id` (default: a
    synthetic application) would give rules. `record(session, run, execution)` runs in the
    transaction that stores the execution record (the API's audit event).
    """
    if (user_id is None) == (user is None):
        raise _invalid("Payload validation error: 'Give exactly one of user_id and user'.")
    if context is not None and not isinstance(context, dict):
        raise _invalid("Payload validation error: 'Expected type object' on property context.")
    _check_text([rule_id, user_id, client_id, *(rule_ids or [])], "body")
    _check_text(user, "user")
    _check_text(context, "context")
    async with services.database.reader() as session:
        rules: list[Rule] | None = None
        if rule_id is not None:
            rules = [await get_rule(session, rule_id)]
        elif rule_ids is not None:
            rules = [await get_rule(session, i) for i in dict.fromkeys(rule_ids)]
            rules.sort(key=lambda r: (r.stage, r.order))
        for rule in rules or []:
            if rule.language != "python":
                raise _invalid(f"The rule {rule.name!r} is a JavaScript rule: Bastion runs Python rules only.")
        if user_id is not None:
            stored = await user_store.get_user(session, user_id=user_id)
            if stored is None:
                raise ManagementError(404, "The user does not exist.", "inexistent_user")
            rule_input, user_record = rule_user(stored), stored
            roles = await role_store.user_role_names(session, user_id=user_id)
        else:
            rule_input = _sample_user(user or {})
            user_record = _sample_record(rule_input)
            roles = []
        client = _sample_client()
        if client_id is not None:
            stored_client = await client_store.get_client(session, client_id=client_id)
            if stored_client is None:
                raise ManagementError(404, "The client does not exist", "inexistent_client")
            client = stored_client
    connection = await services.tenant.connection(user_record.connection) or _sample_connection(user_record.connection)
    hostname = urlsplit(services.settings.issuer).hostname or "localhost"
    default_context = rule_context(
        issuer=services.settings.issuer,
        protocol="oidc-basic-profile",
        client=client,
        connection=connection,
        request=request or RequestInfo(ip="127.0.0.1", user_agent="bastion-cli", hostname=hostname),
        user=user_record,
        session_id=new_id("try_", 16),
        methods=[("pwd", now_ms())],
        roles=roles,
    )
    rule_context_input = _merge(default_context, context or {})

    run = await services.rules.run(user=rule_input, context=rule_context_input, rules=rules, dry_run=dry_run)
    protocol = rule_context_input.get("protocol")
    execution = run.execution_values(
        protocol=(protocol if isinstance(protocol, str) else "oidc-basic-profile")[:64],
        client_id=client.client_id, user_id=str(rule_input.get("user_id"))[:128],
    ) if run.ran else None
    async with services.database.transaction() as session:
        if record is not None:
            await record(session, run, execution)
        elif execution is not None:
            await record_event(session, EventType.SUCCESS_API_OPERATION, description="Try rules (CLI)", rules_execution=execution)
    return try_answer(run, dry_run=dry_run)
