"""The login pipeline, in one place.

    begin_login      AuthorizationRequest -> transaction (awaiting_login), bound to the browser
    resume_login     load the transaction: right browser, not expired, in the expected state
    authenticate     awaiting_login -> authenticated   (password, passwordless code, live SSO session)
    advance          drive the transaction to its next stop, from wherever it is:

      authenticated ── consent_needed? ──> awaiting_consent            (/u/consent answers it)
      authenticated | consented ── run the rules ──> decided
                         record_login:     logins_count, last_login, last_ip (first run only)
                         grant_for_user:   the scopes (RBAC applied) and `permissions` (login/scopes.py)
                         run_login_rules:  the enabled rules, in order, in a sandboxed worker
                         apply_rules:      claims, scopes, jti, profile -- or the denial
                         continue_as_primary_user:  context.primary_user, only to the primary
                                           the user is linked to (docs/identities.md)
      resumed ── run the rules again (protocol redirect-callback) ──> decided
      decided ── denial ──> failed
              ── MFA asked, not passed ──> awaiting_mfa               (/u/mfa answers it)
                   prompt=none: interaction_required; a remembered browser passes it
              ── redirect asked, first time ──> awaiting_redirect      (/continue answers it)
                   prompt=none: interaction_required
              ──> completed: the SSO session starts (or learns `mfa`), log event `s` with the
                   rules' execution records, and the protocol answers (code, SAML response)

Every step is a compare-and-set on the stored state, so it runs once, on any server
process. What a paused step needs lives in the transaction's `progress`. What the rules
decide is written together with the login's next stop (one write from the state they
ran in): `decided` is stored only when a passed factor hands the login back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bastion.errors import PageError
from bastion.events import EventType, record_event
from bastion.login.rules_step import apply_rules, continue_as_primary_user, run_login_rules
from bastion.login.scopes import defined_scopes, grant_for_user, grant_scopes
from bastion.login.transaction import MFA_ACR, AuthorizationRequest, LoginDenial, LoginResult, LoginState, epoch
from bastion.rules.context import RequestInfo
from bastion.rules.engine import GENERIC_DENIAL
from bastion.security.handles import digest, new_handle, new_id
from bastion.security.tickets import InvalidTicket, Tickets
from bastion.services import Services
from bastion.storage import authenticators, login_transactions, sso_sessions, user_grants, users
from bastion.storage.records import LoginTransactionRecord, ResourceServer, SsoSession, User
from bastion.tenant.linking import primary_of
from bastion.tenant.tenant_settings import tenant_settings

__all__ = [
    "LoginContext",
    "Answer",
    "begin_login",
    "resume_login",
    "authenticate",
    "authentication",
    "advance",
    "accept_consent",
    "pass_mfa",
    "count_mfa_failure",
    "decline_consent",
    "open_continue_state",
    "resume_from_redirect",
    "grant_scopes",
    "session_satisfies",
    "consent_scopes",
    "MFA_PROVIDERS",
]

_HANDLE = re.compile(r"[A-Za-z0-9_-]{16,64}")
CONTINUE_PURPOSE = "continue-state"
MFA_PROVIDERS = ("any", "guardian", "google-authenticator", "duo")


@dataclass(frozen=True)
class LoginContext:
    """Who is asking: the network facts and cookies of the current HTTP request."""

    ip: str
    user_agent: str | None
    hostname: str = ""
    browser: str | None = None  # the browser-binding cookie
    remembered: str | None = None  # the MFA remember-browser cookie
    session_cookie: str | None = None  # the current SSO session cookie, if any


@dataclass(frozen=True)
class Answer:
    """Where the login goes next: a page or URL (`redirect`), or its end (`outcome` for `request`)."""

    request: AuthorizationRequest
    redirect: str | None = None
    outcome: LoginResult | LoginDenial | None = None
    session_cookie: str | None = None  # a new SSO session to set in the browser


def _expired() -> PageError:
    return PageError("Login expired", "This login took too long or was already used. Go back to the application and sign in again.")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- starting and finding a transaction ------------------------------------------


async def begin_login(
    services: Services, request: AuthorizationRequest, *, browser: str, authenticated: dict[str, Any] | None = None
) -> LoginTransactionRecord:
    """Persist a new transaction bound to this browser (its cookie's digest): awaiting the login,
    or already `authenticated` (what `authentication()` gives, for a login on an SSO session)."""
    fields = {"state": LoginState.AWAITING_LOGIN.value, "user_id": None, "auth_time": None, "methods": [], "progress": {}}
    if authenticated is not None:
        fields = {"state": LoginState.AUTHENTICATED.value, **authenticated}
    async with services.database.transaction() as session:
        return await login_transactions.insert_login_transaction(
            session,
            id=new_handle(24),
            client_id=request.client_id,
            request=request.to_json(),
            browser_digest=digest(browser),
            expires_at=_now() + timedelta(seconds=services.settings.login_transaction_lifetime),
            **fields,
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
        or transaction.expires_at <= _now()
        or transaction.state != expected.value
    ):
        raise _expired()
    return transaction


async def _move(
    services: Services, transaction: LoginTransactionRecord, expected: LoginState, to: LoginState, **changes: Any
) -> LoginTransactionRecord:
    """One compare-and-set step; a step already taken (a replay, a double submit) is refused."""
    async with services.database.transaction() as session:
        moved = await login_transactions.advance_login_transaction(
            session, id=transaction.id, expected_state=expected.value, changes={"state": to.value, **changes}
        )
    if not moved:
        raise _expired()
    return replace(transaction, state=to.value, **changes)


# -- authentication ------------------------------------------------------------------


async def authenticate(
    services: Services, transaction: LoginTransactionRecord, *, user: User, methods: list[str], sso: SsoSession | None = None,
    connection: str | None = None,
) -> LoginTransactionRecord:
    """awaiting_login -> authenticated, once (what changes: `authentication()`)."""
    fields = await authentication(services, user=user, methods=methods, sso=sso, connection=connection)
    return await _move(services, transaction, LoginState.AWAITING_LOGIN, LoginState.AUTHENTICATED, **fields)


async def authentication(
    services: Services, *, user: User, methods: list[str], sso: SsoSession | None = None, connection: str | None = None
) -> dict[str, Any]:
    """The transaction's fields once `user` has authenticated.

    `connection` is the one the person authenticated with (default: `user`'s own). Rules see it
    as `context.connection` and the log event names it, also when the login goes on as the
    primary user of a linked secondary. A login riding on an SSO session names the user's
    primary connection: the session does not record the connection it began with.

    With `sso` the login rides on that live session (its methods, its auth_time, its sid);
    without it, a new session starts when the login completes. A linked secondary logs in as
    its primary (tenant/linking.py): the password and passwordless checks resolve it already,
    this catches every other way in (a session from before the link, an upstream login).
    """
    connection = connection or user.connection
    if user.linked_to is not None:
        async with services.database.reader() as session:
            primary = await primary_of(session, user=user)
        if primary is None:
            raise PageError("Account unavailable", "This account no longer exists. Go back to the application and sign in again.")
        user = primary
    progress = {"sid": sso.sid, "new_session": False} if sso else {"sid": new_id(length=32), "new_session": True}
    progress["connection"] = connection
    return {
        "user_id": user.user_id,
        "auth_time": sso.auth_time if sso else _now(),
        "methods": list(sso.methods) if sso else list(methods),
        "progress": progress,
    }


# -- the driver ----------------------------------------------------------------------


async def advance(services: Services, transaction: LoginTransactionRecord, *, context: LoginContext) -> Answer:
    """Move the transaction on until it needs the browser (a page, a redirect) or ends."""
    request = AuthorizationRequest.from_json(transaction.request)
    while True:
        state = LoginState(transaction.state)
        if state is LoginState.AUTHENTICATED and await consent_needed(services, transaction, request):
            transaction = await _move(services, transaction, state, LoginState.AWAITING_CONSENT)
            return Answer(request, redirect=f"/u/consent?{urlencode({'state': transaction.id})}")
        if state in (LoginState.AUTHENTICATED, LoginState.CONSENTED, LoginState.RESUMED):
            # What the rules decide is stored with the login's next stop (a pause, or the end),
            # in that stop's own compare-and-set from `state`: one write, not two.
            decided = await _run_rules(services, transaction, request, context=context)
            return await _after_rules(services, decided, request, context=context, expected=state)
        if state is LoginState.DECIDED:
            return await _after_rules(services, transaction, request, context=context, expected=state)
        raise _expired()


async def _run_rules(
    services: Services, transaction: LoginTransactionRecord, request: AuthorizationRequest, *, context: LoginContext
) -> LoginTransactionRecord:
    """The rules run; the returned record (not stored yet) carries what they decided in `progress`."""
    state = LoginState(transaction.state)
    resumed = state is LoginState.RESUMED
    progress = dict(transaction.progress)
    client = await services.tenant.client(request.client_id)
    api = await services.tenant.resource_server(request.audience) if request.audience else None
    assert client is not None and transaction.user_id is not None and transaction.auth_time is not None
    async with services.database.transaction() as session:
        if resumed:
            user = await users.get_user(session, user_id=transaction.user_id)
        else:  # rules see this login counted, once
            user = await users.record_login(session, user_id=transaction.user_id, ip=context.ip)
    if user is None or user.blocked:
        return replace(transaction, progress={**progress, "denial": LoginDenial("unauthorized", "user is blocked").to_json()})
    connection = progress.get("connection") or user.connection
    progress["user"] = {"name": user.email or user.username, "connection": connection}
    auth_ms = epoch(transaction.auth_time) * 1000
    granted = await grant_for_user(services, user_id=user.user_id, requested=request.scopes, api=api)
    base = LoginResult(
        user_id=user.user_id,
        client_id=request.client_id,
        scopes=granted.scopes,
        permissions=granted.permissions,
        audience=request.audience,
        auth_time=epoch(transaction.auth_time),
        sid=progress.get("sid"),
        nonce=request.nonce,
        methods=[[m, auth_ms] for m in transaction.methods],
    )
    callback = progress.get("callback") or {}
    protocol = "redirect-callback" if resumed else request.protocol
    run = await run_login_rules(
        services,
        protocol=protocol,
        original_protocol=request.protocol if resumed else None,
        client=client, user=user, connection_name=connection,
        request=RequestInfo(
            ip=context.ip, user_agent=context.user_agent, hostname=context.hostname,
            query=callback.get("query", {}) if resumed else request.query, body=callback.get("body", {}) if resumed else {},
        ),
        result=base,
        saml_configuration=request.saml["configuration"] if request.saml else None,
    )
    outcome = await apply_rules(services, run, base, saml_login=request.saml is not None)
    # context.primary_user: the login may continue as the primary the user was just linked to;
    # the session, the tokens and the log event are then that user's.
    outcome, switched = await continue_as_primary_user(services, run, outcome, user=user, requested=request.scopes)
    if switched.user_id != user.user_id:
        async with services.database.transaction() as session:
            await users.record_login(session, user_id=switched.user_id, ip=context.ip)
        progress["user"] = {"name": switched.email or switched.username, "connection": connection}
        transaction = replace(transaction, user_id=switched.user_id)
    progress.pop("callback", None)
    progress.update(result=None, denial=None, mfa=progress.get("mfa") if resumed else None)
    if isinstance(outcome, LoginDenial):
        progress["denial"] = outcome.to_json()
    else:
        progress["result"] = outcome.to_json()
        wanted = run.outcome.multifactor if run.outcome else None
        if wanted:
            mfa, problem = normalize_multifactor(wanted)
            if problem:
                run.outcome.warnings.append(problem)
                progress["denial"] = LoginDenial("access_denied", GENERIC_DENIAL).to_json()
            else:
                progress["mfa"] = mfa
        redirect = run.outcome.redirect if run.outcome else None
        if redirect:
            url, problem = _redirect_url(redirect)
            if resumed or progress.get("redirected"):
                run.outcome.warnings.append("context.redirect was ignored: a login redirects once (Auth0 ignores it on redirect-callback)")
            elif problem:
                run.outcome.warnings.append(problem)
                progress["denial"] = LoginDenial("access_denied", GENERIC_DENIAL).to_json()
            else:
                progress["redirect"] = url
    if run.ran:
        executions = list(progress.get("executions") or [])
        executions.append(run.execution_values(protocol=protocol, client_id=client.client_id, user_id=user.user_id))
        progress["executions"] = executions
    return replace(transaction, progress=progress)


async def _after_rules(
    services: Services, transaction: LoginTransactionRecord, request: AuthorizationRequest, *, context: LoginContext,
    expected: LoginState,
) -> Answer:
    """The next stop after the rules decided, moved to from `expected` (the stored state)."""
    progress = transaction.progress
    if progress.get("denial"):
        return await _finish(services, transaction, request, LoginDenial(**progress["denial"]), context=context, expected=expected)
    mfa = progress.get("mfa")
    # A rule's requirement is met by a factor passed in this login, or a remembered browser;
    # `mfa` from earlier in the SSO session does not count (rules that accept it check
    # context.authentication.methods themselves, as Auth0's require-mfa-once-per-session).
    if mfa and not progress.get("mfa_passed"):
        if await _browser_remembered(services, transaction, request, mfa, context):
            transaction = replace(
                transaction, methods=_with_mfa(transaction.methods), progress={**progress, "mfa_passed": True, "mfa_remembered": True},
            )
            return await _after_rules(services, transaction, request, context=context, expected=expected)
        if "none" in request.prompt:
            return await _finish(
                services, transaction, request, LoginDenial("interaction_required", "Multifactor authentication required"),
                context=context, expected=expected,
            )
        transaction = await _move(
            services, transaction, expected, LoginState.AWAITING_MFA,
            user_id=transaction.user_id, methods=transaction.methods, progress=progress,
        )
        return Answer(request, redirect=f"/u/mfa?{urlencode({'state': transaction.id})}")
    if progress.get("redirect") and not progress.get("redirected"):
        if "none" in request.prompt:
            return await _finish(
                services, transaction, request, LoginDenial("interaction_required", "A rule asked for an interactive step"),
                context=context, expected=expected,
            )
        nonce = new_handle(24)
        ticket = Tickets(services.settings.secret_key or "").issue(
            CONTINUE_PURPOSE, {"t": transaction.id, "n": nonce}, ttl=services.settings.redirect_state_lifetime
        )
        url = progress["redirect"]
        transaction = await _move(
            services, transaction, expected, LoginState.AWAITING_REDIRECT, user_id=transaction.user_id, methods=transaction.methods,
            progress={**progress, "redirected": True, "continue_digest": digest(nonce)},
            expires_at=_now() + timedelta(seconds=services.settings.redirect_state_lifetime),
        )
        return Answer(request, redirect=_with_query(url, {"state": ticket}))
    result = LoginResult.from_json(progress["result"])
    passed_mfa = "mfa" in transaction.methods
    auth_ms = epoch(transaction.auth_time) * 1000 if transaction.auth_time else 0
    result = replace(
        result,
        methods=[[m, auth_ms] for m in transaction.methods],  # refresh-token rules see `mfa` too
        amr=["mfa"] if passed_mfa else [],
        acr=MFA_ACR if passed_mfa and request.acr_values and MFA_ACR in request.acr_values.split() else None,
    )
    return await _finish(services, transaction, request, result, context=context, expected=expected)


async def _finish(
    services: Services,
    transaction: LoginTransactionRecord,
    request: AuthorizationRequest,
    outcome: LoginResult | LoginDenial,
    *,
    context: LoginContext,
    expected: LoginState,
) -> Answer:
    """-> completed | failed, from `expected`: the SSO session, the log event, the answer."""
    denied = isinstance(outcome, LoginDenial)
    progress = transaction.progress
    client = await services.tenant.client(request.client_id)
    assert client is not None and transaction.user_id is not None and transaction.auth_time is not None
    cookie = None
    lifetime = (await tenant_settings(services)).session_lifetime  # a new SSO session's absolute lifetime
    async with services.database.transaction() as session:
        moved = await login_transactions.advance_login_transaction(
            session, id=transaction.id, expected_state=expected.value,
            changes={"state": (LoginState.FAILED if denied else LoginState.COMPLETED).value, "user_id": transaction.user_id},
        )
        if not moved:
            raise _expired()
        known = progress.get("user")
        if known is None:  # the rules did not run (consent declined): look the user up for the log
            user = await users.get_user(session, user_id=transaction.user_id)
            known = {"name": (user.email or user.username) if user else None, "connection": user.connection if user else None}
        interaction = denied and outcome.error == "interaction_required"
        if progress.get("new_session") and not interaction:
            if context.session_cookie:
                await sso_sessions.revoke_sso_session(session, cookie_digest=digest(context.session_cookie))
            cookie = new_handle(32)
            await sso_sessions.insert_sso_session(
                session, cookie_digest=digest(cookie), sid=progress["sid"], user_id=transaction.user_id,
                auth_time=transaction.auth_time, methods=list(transaction.methods),
                expires_at=_now() + timedelta(seconds=lifetime),
            )
        elif "mfa" in transaction.methods and not denied:
            await sso_sessions.add_session_methods(session, sid=progress["sid"], methods=["mfa"])
        executions = list(progress.get("executions") or [])
        execution = dict(executions[-1]) if executions else None
        if execution and len(executions) > 1:
            execution["earlier_runs"] = executions[:-1]
        await record_event(
            session, EventType.FAILED_LOGIN if denied else EventType.SUCCESS_LOGIN,
            description=outcome.description if denied else "Successful login", user_id=transaction.user_id,
            user_name=known["name"], client_id=client.client_id, client_name=client.name,
            connection=known["connection"], ip=context.ip, user_agent=context.user_agent,
            details={"prompt": request.prompt, "sid": progress.get("sid"), "methods": list(transaction.methods)},
            rules_execution=execution,
        )
    return Answer(request, outcome=outcome, session_cookie=cookie)


# -- the steps the browser answers -----------------------------------------------------


async def consent_needed(services: Services, transaction: LoginTransactionRecord, request: AuthorizationRequest) -> bool:
    """Third-party applications (Auth0's `is_first_party: false`) ask the user to consent to the
    scopes they request, once per user, application and API; `prompt=consent` asks again.
    A first-party application asks too when its API turns off
    `skip_consent_for_verifiable_first_party_clients`."""
    client = await services.tenant.client(request.client_id)
    api = await services.tenant.resource_server(request.audience) if request.audience else None
    assert client is not None and transaction.user_id is not None
    if client.is_first_party and (api is None or api.skip_consent_for_verifiable_first_party_clients):
        return False
    wanted = consent_scopes(request, api)
    if not wanted:  # nothing to consent to (a SAML login asks for no scopes)
        return False
    if "consent" in request.prompt:
        return True
    async with services.database.reader() as session:
        grant = await user_grants.get_user_grant(
            session, user_id=transaction.user_id, client_id=client.client_id, audience=_grant_audience(services, request)
        )
    return grant is None or not set(wanted) <= set(grant.scope)


def consent_scopes(request: AuthorizationRequest, api: ResourceServer | None) -> list[str]:
    """The scopes a consent screen lists: what the login would grant, before RBAC (a user
    consents to every requested scope the API defines; RBAC may then grant fewer)."""
    return defined_scopes(request.scopes, api)


def _grant_audience(services: Services, request: AuthorizationRequest) -> str:
    return request.audience or services.settings.userinfo_audience


async def accept_consent(services: Services, transaction: LoginTransactionRecord, *, context: LoginContext) -> Answer:
    """awaiting_consent -> consented: the grant is remembered, then the login goes on."""
    request = AuthorizationRequest.from_json(transaction.request)
    api = await services.tenant.resource_server(request.audience) if request.audience else None
    assert transaction.user_id is not None
    transaction = await _move(services, transaction, LoginState.AWAITING_CONSENT, LoginState.CONSENTED)
    async with services.database.transaction() as session:
        await user_grants.save_user_grant(
            session, user_id=transaction.user_id, client_id=request.client_id,
            audience=_grant_audience(services, request), scope=consent_scopes(request, api),
        )
    return await advance(services, transaction, context=context)


async def decline_consent(services: Services, transaction: LoginTransactionRecord, *, context: LoginContext) -> Answer:
    """awaiting_consent -> failed: the application receives access_denied."""
    request = AuthorizationRequest.from_json(transaction.request)
    declined = replace(
        transaction,
        progress={**transaction.progress, "denial": LoginDenial("access_denied", "User did not authorize the request").to_json()},
    )
    return await _after_rules(services, declined, request, context=context, expected=LoginState.AWAITING_CONSENT)


async def pass_mfa(services: Services, transaction: LoginTransactionRecord) -> LoginTransactionRecord:
    """awaiting_mfa -> decided with `mfa` among the methods; `advance` takes the login on."""
    return await _move(
        services, transaction, LoginState.AWAITING_MFA, LoginState.DECIDED,
        methods=_with_mfa(transaction.methods), progress={**transaction.progress, "mfa_passed": True},
    )


def _with_mfa(methods: list[str]) -> list[str]:
    return methods if "mfa" in methods else [*methods, "mfa"]


async def count_mfa_failure(services: Services, transaction: LoginTransactionRecord, *, limit: int) -> LoginTransactionRecord:
    """A wrong second factor. Past `limit` failures the login fails (access_denied)."""
    failures = int(transaction.progress.get("mfa_failures", 0)) + 1
    progress = {**transaction.progress, "mfa_failures": failures}
    if failures >= limit:
        progress["denial"] = LoginDenial("access_denied", "Too many failed multifactor attempts").to_json()
        return await _move(services, transaction, LoginState.AWAITING_MFA, LoginState.DECIDED, progress=progress)
    return await _move(services, transaction, LoginState.AWAITING_MFA, LoginState.AWAITING_MFA, progress=progress)


async def open_continue_state(services: Services, state: str | None, *, browser: str | None) -> LoginTransactionRecord:
    """The transaction a rule's redirect paused, if `state` is genuine, unused, unexpired and this browser's."""
    try:
        payload = Tickets(services.settings.secret_key or "").open(CONTINUE_PURPOSE, state)
    except InvalidTicket as problem:
        raise PageError("Invalid state", f"The login cannot continue: the state parameter is not valid ({problem}). Sign in again from the application.") from None
    transaction_id, nonce = payload.get("t"), payload.get("n")
    if not isinstance(transaction_id, str) or not isinstance(nonce, str) or not browser:
        raise PageError("Invalid state", "The login cannot continue: the state parameter is not valid. Sign in again from the application.")
    async with services.database.reader() as session:
        transaction = await login_transactions.get_login_transaction(session, id=transaction_id)
    if transaction is None or transaction.progress.get("continue_digest") != digest(nonce):
        raise PageError("Invalid state", "The login cannot continue: the state parameter is not valid. Sign in again from the application.")
    if transaction.browser_digest != digest(browser):
        raise PageError("Invalid state", "This login was started in another browser. Sign in again from the application.", 403)
    if transaction.state != LoginState.AWAITING_REDIRECT.value or transaction.expires_at <= _now():
        raise _expired()
    return transaction


async def resume_from_redirect(
    services: Services, transaction: LoginTransactionRecord, *, query: dict[str, str], body: dict[str, str], context: LoginContext
) -> Answer:
    """awaiting_redirect -> resumed (once: the state is spent), then the rules run again."""
    transaction = await _move(
        services, transaction, LoginState.AWAITING_REDIRECT, LoginState.RESUMED,
        progress={**transaction.progress, "callback": {"query": query, "body": body}},
    )
    return await advance(services, transaction, context=context)


# -- rules' requests, checked -----------------------------------------------------------


def normalize_multifactor(value: Any) -> tuple[dict[str, Any], str | None]:
    """`context.multifactor` as the pipeline keeps it; the second value names a problem."""
    if not isinstance(value, dict):
        return {}, "context.multifactor must be a dict such as {'provider': 'any'}"
    provider = value.get("provider", "any")
    if provider not in MFA_PROVIDERS:
        return {}, f"context.multifactor provider {provider!r} is not one of {', '.join(MFA_PROVIDERS)}"
    remember = value.get("allow_remember_browser", value.get("allowRememberBrowser", True))
    if value.get("ignore_cookie") or value.get("ignoreCookie"):
        remember = False
    mfa = {"provider": provider, "allow_remember_browser": bool(remember)}
    if provider == "duo":
        missing = [k for k in ("ikey", "skey", "host") if not isinstance(value.get(k), str) or not value.get(k)]
        if missing:
            return {}, f"context.multifactor for duo needs {', '.join(missing)}"
        mfa.update({k: value[k] for k in ("ikey", "skey", "host")})
        if isinstance(value.get("username"), str):
            mfa["username"] = value["username"]
    return mfa, None


def _redirect_url(value: Any) -> tuple[str, str | None]:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str):
        return "", "context.redirect must be {'url': 'https://...'}"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "", f"context.redirect url {url!r} is not an absolute http(s) URL"
    return url, None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


async def _browser_remembered(
    services: Services, transaction: LoginTransactionRecord, request: AuthorizationRequest, mfa: dict[str, Any], context: LoginContext
) -> bool:
    """A remembered browser passes MFA unless the rule forbids it or the app asks for MFA by acr_values."""
    if not mfa.get("allow_remember_browser", True) or not context.remembered or not context.browser:
        return False
    if request.acr_values and MFA_ACR in request.acr_values.split():
        return False
    assert transaction.user_id is not None
    async with services.database.reader() as session:
        return await authenticators.is_browser_remembered(
            session, handle_digest=digest(context.remembered), user_id=transaction.user_id, browser_digest=digest(context.browser)
        )


# -- sessions --------------------------------------------------------------------------


def session_satisfies(request: AuthorizationRequest, sso: SsoSession | None) -> bool:
    """A live session can answer unless the request asks to log in again or its max_age has passed."""
    if sso is None or "login" in request.prompt:
        return False
    if request.max_age is not None:
        return (_now() - sso.auth_time).total_seconds() <= request.max_age
    return True
