"""The login pipeline, in one place.

    begin_login          AuthorizationRequest -> transaction (awaiting_login), bound to the browser
    resume_login         load the transaction: right browser, not expired, in the expected state
    authenticate         awaiting_login -> authenticated     (credentials checked, or a live SSO session)
    complete_login       authenticated  -> completed | failed  -> LoginResult | LoginDenial
                           record_login:     logins_count, last_login, last_ip (rules see this login counted)
                           grant_scopes:     OIDC scopes asked for + the API's scopes asked for
                           run_login_rules:  the enabled rules, in order, in a sandboxed worker
                           apply_rules:      claims, scopes, jti, profile -- or the denial
                           log event `s` (or `f`), with the rules' execution record

Protocols turn the result into their answer (an authorization code or an error to
the redirect URI, a SAML response); see `Responder`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from starlette.responses import Response

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.rules_step import apply_rules, run_login_rules
from bastion.login.transaction import OIDC_SCOPES, AuthorizationRequest, LoginDenial, LoginResult, LoginState, epoch
from bastion.rules.context import RequestInfo
from bastion.security.handles import digest, new_handle
from bastion.services import Services
from bastion.storage import login_transactions, users
from bastion.storage.records import LoginTransactionRecord, ResourceServer, SsoSession, User

__all__ = [
    "Responder",
    "LoginContext",
    "begin_login",
    "resume_login",
    "authenticate",
    "complete_login",
    "grant_scopes",
]

_HANDLE = re.compile(r"[A-Za-z0-9_-]{16,64}")

Responder = Callable[[Services, AuthorizationRequest, "LoginResult | LoginDenial"], Awaitable[Response]]


@dataclass(frozen=True)
class LoginContext:
    """Who is asking: the network facts of the current HTTP request."""

    ip: str
    user_agent: str | None
    hostname: str = ""


def _expired() -> PageError:
    return PageError("Login expired", "This login took too long or was already used. Go back to the application and sign in again.")


async def begin_login(services: Services, request: AuthorizationRequest, *, browser: str) -> LoginTransactionRecord:
    """Persist a new transaction bound to this browser (its cookie's digest)."""
    now = datetime.now(timezone.utc)
    async with services.database.transaction() as session:
        return await login_transactions.insert_login_transaction(
            session,
            id=new_handle(24),
            state=LoginState.AWAITING_LOGIN.value,
            client_id=request.client_id,
            request=request.to_json(),
            browser_digest=digest(browser),
            user_id=None,
            auth_time=None,
            methods=[],
            expires_at=now + timedelta(seconds=services.settings.login_transaction_lifetime),
        )


async def resume_login(
    services: Services, transaction_id: str | None, *, browser: str | None, expected: LoginState
) -> LoginTransactionRecord:
    """The transaction, only for the browser that started it, before it expires, in `expected` state."""
    if not transaction_id or not _HANDLE.fullmatch(transaction_id) or not browser:
        raise _expired()
    async with services.database.reader() as session:
        transaction = await login_transactions.get_login_transaction(session, id=transaction_id)
    if (
        transaction is None
        or transaction.browser_digest != digest(browser)
        or transaction.expires_at <= datetime.now(timezone.utc)
        or transaction.state != expected.value
    ):
        raise _expired()
    return transaction


async def authenticate(
    services: Services, transaction: LoginTransactionRecord, *, user: User, sso: SsoSession
) -> LoginTransactionRecord:
    """awaiting_login -> authenticated, once."""
    changes = {
        "state": LoginState.AUTHENTICATED.value,
        "user_id": user.user_id,
        "auth_time": sso.auth_time,
        "methods": sso.methods,
    }
    async with services.database.transaction() as session:
        moved = await login_transactions.advance_login_transaction(
            session, id=transaction.id, expected_state=LoginState.AWAITING_LOGIN.value, changes=changes
        )
        if not moved:
            raise _expired()
        updated = await login_transactions.get_login_transaction(session, id=transaction.id)
    assert updated is not None
    return updated


async def complete_login(
    services: Services, transaction: LoginTransactionRecord, *, sso: SsoSession, context: LoginContext
) -> tuple[AuthorizationRequest, LoginResult | LoginDenial]:
    """authenticated -> completed (or failed, when a rule denies): what the login grants, recorded once."""
    request = AuthorizationRequest.from_json(transaction.request)
    api = await services.tenant.resource_server(request.audience) if request.audience else None
    client = await services.tenant.client(request.client_id)
    assert client is not None and transaction.user_id is not None and transaction.auth_time is not None
    async with services.database.transaction() as session:
        await users.record_login(session, user_id=transaction.user_id, ip=context.ip)  # rules see this login counted
        user = await users.get_user(session, user_id=transaction.user_id)
    assert user is not None
    scopes = grant_scopes(request.scopes, api)
    auth_ms = epoch(transaction.auth_time) * 1000
    base = LoginResult(
        user_id=user.user_id,
        client_id=request.client_id,
        scopes=scopes,
        audience=request.audience,
        auth_time=epoch(transaction.auth_time),
        sid=sso.sid,
        nonce=request.nonce,
        amr=[m for m in transaction.methods if m in ("mfa",)],
        methods=[[m, auth_ms] for m in transaction.methods],
    )
    run = await run_login_rules(
        services, protocol=request.protocol, client=client, user=user, connection_name=user.connection,
        request=RequestInfo(ip=context.ip, user_agent=context.user_agent, hostname=context.hostname, query=request.query),
        result=base,
    )
    outcome = await apply_rules(services, run, base)
    denied = isinstance(outcome, LoginDenial)
    async with services.database.transaction() as session:
        moved = await login_transactions.advance_login_transaction(
            session, id=transaction.id, expected_state=LoginState.AUTHENTICATED.value,
            changes={"state": (LoginState.FAILED if denied else LoginState.COMPLETED).value},
        )
        if not moved:
            raise _expired()
        execution = run.execution_values(protocol=request.protocol, client_id=client.client_id, user_id=user.user_id) if run.ran else None
        await record_event(
            session, EventType.FAILED_LOGIN if denied else EventType.SUCCESS_LOGIN,
            description=outcome.description if denied else "Successful login", user_id=user.user_id,
            user_name=user.email or user.username, client_id=client.client_id, client_name=client.name,
            connection=user.connection, ip=context.ip, user_agent=context.user_agent,
            details={"prompt": request.prompt, "sid": sso.sid}, rules_execution=execution,
        )
    return request, outcome


def grant_scopes(requested: list[str], api: ResourceServer | None) -> list[str]:
    """The OIDC scopes asked for, plus the asked-for scopes the API defines (others are dropped).

    A system API (the Management API) grants no scope to a user: its scopes are for
    machine-to-machine clients with a client grant.
    """
    allowed = api.scope_values if api and not api.is_system else set()
    return [s for s in requested if s in OIDC_SCOPES or s in allowed]


def session_satisfies(request: AuthorizationRequest, sso: SsoSession | None) -> bool:
    """A live session can answer unless the request asks to log in again or its max_age has passed."""
    if sso is None or "login" in request.prompt:
        return False
    if request.max_age is not None:
        return (datetime.now(timezone.utc) - sso.auth_time).total_seconds() <= request.max_age
    return True
