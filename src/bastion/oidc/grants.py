"""RFC 6749 §4-6: the token endpoint's grants.

    authorization_code   §4.1.3  + RFC 7636 (PKCE): single-use code; a replay revokes what it issued
    refresh_token        §6      rotation in a family; a reused token revokes the whole family
    client_credentials   §4.4    needs a client grant for the audience (as Auth0); runs no login rules
    password             §4.3    and Auth0's password-realm: database connection (`password`: the tenant's
                                 default_directory), brute-force protection
    mfa-otp, mfa-recovery-code   Auth0's grants that finish a password login a rule sent to MFA
    passwordless/otp             Auth0's: a code from /passwordless/start (passwordless/grant.py)

Back-channel grants cannot show a page: a rule's `context.redirect` yields
`interaction_required`; its `context.multifactor` yields `mfa_required` with an
`mfa_token` on the password grants (and `interaction_required` elsewhere, or for Duo).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from bastion.errors import OAuthError
from bastion.events import EventType, record_event
from bastion.login.credentials import LoginFailure, authenticate_password
from bastion.login.pipeline import LoginContext, normalize_multifactor
from bastion.login.scopes import grant_for_user
from bastion.login.rules_step import apply_rules, continue_as_primary_user, run_login_rules
from bastion.login.transaction import LoginDenial, LoginResult
from bastion.rules.context import RequestInfo
from bastion.mfa.factors import use_recovery_code, verify_otp
from bastion.mfa.tokens import issue_mfa_token, open_mfa_token, spend_mfa_token
from bastion.rules.engine import GENERIC_DENIAL, RuleRun
from bastion.oidc.client_auth import AuthenticatedClient
from bastion.oidc.tokens import TokenIssuer
from bastion.passwordless.grant import PASSWORDLESS_OTP_GRANT, exchange_passwordless_otp
from bastion.security.handles import digest, new_handle, new_id
from bastion.services import Services
from bastion.storage import authorization_codes, refresh_tokens
from bastion.storage import users as user_store
from bastion.storage.records import Client, ResourceServer, User
from bastion.tenant.tenant_settings import requested_audience, tenant_settings

__all__ = ["TokenGrants", "PASSWORD_REALM_GRANT", "MFA_OTP_GRANT", "MFA_RECOVERY_CODE_GRANT"]

PASSWORD_REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
MFA_OTP_GRANT = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE_GRANT = "http://auth0.com/oauth/grant-type/mfa-recovery-code"


class _MfaRequired(Exception):
    def __init__(self, result: LoginResult, run: RuleRun):
        self.result = result
        self.run = run


def _invalid_grant(description: str, status: int = 403) -> OAuthError:
    return OAuthError("invalid_grant", description, status)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class TokenGrants:
    def __init__(self, services: Services, issuer: TokenIssuer):
        self._services = services
        self._issuer = issuer
        self._handlers = {
            "authorization_code": self.authorization_code,
            "refresh_token": self.refresh_token,
            "client_credentials": self.client_credentials,
            "password": self.password,
            PASSWORD_REALM_GRANT: self.password,
            MFA_OTP_GRANT: self.mfa,
            MFA_RECOVERY_CODE_GRANT: self.mfa,
            PASSWORDLESS_OTP_GRANT: self.passwordless_otp,
        }

    async def handle(self, grant_type: str | None, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext) -> dict[str, Any]:
        if not grant_type:
            raise OAuthError("invalid_request", "Missing required parameter: grant_type")
        handler = self._handlers.get(grant_type)
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant type: {grant_type}")
        if grant_type not in caller.client.grant_types and not (grant_type in _MFA_GRANTS and _MFA_GRANTS[grant_type] in caller.client.grant_types):
            raise OAuthError("unauthorized_client", f"Grant type '{grant_type}' not allowed for the client.", 403)
        return await handler(caller, params, context, grant_type)

    # -- authorization_code ------------------------------------------------

    async def authorization_code(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, _grant_type: str) -> dict[str, Any]:
        client = caller.client
        code_value = params.get("code")
        if not code_value:
            raise OAuthError("invalid_request", "Missing required parameter: code")
        family_id = new_id("rtf_", 24)
        user: User | None = None
        async with self._services.database.core_transaction() as session:
            code, first_use = await authorization_codes.consume_authorization_code(
                session, code_digest=digest(code_value), family_id=family_id
            )
            if code is not None and first_use:  # read here, checked once the code is spent for good
                user = await user_store.get_user(session, user_id=code.user_id)
            if code is not None and not first_use and code.refresh_family_id:
                await refresh_tokens.revoke_refresh_family(session, family_id=code.refresh_family_id)
            if code is not None and not first_use:
                await record_event(
                    session, EventType.FAILED_CODE_EXCHANGE, description="Authorization code reused: what it issued is revoked",
                    client_id=client.client_id, client_name=client.name, user_id=code.user_id, ip=context.ip,
                )
        if code is None or not first_use:
            raise _invalid_grant("Invalid authorization code")
        check_code(code, client=client, params=params)
        result = LoginResult.from_json(code.grant)
        user = _live(user)
        api = await self._services.tenant.resource_server(result.audience) if result.audience else None

        async def record(session) -> None:
            await record_event(
                session, EventType.SUCCESS_CODE_EXCHANGE, description="Authorization Code for Access Token",
                client_id=client.client_id, client_name=client.name, user_id=user.user_id, ip=context.ip,
                user_agent=context.user_agent,
            )

        return await self._issue(client, user, result, api, family_id=family_id, record=record)

    # -- refresh_token -----------------------------------------------------

    async def refresh_token(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, _grant_type: str) -> dict[str, Any]:
        client = caller.client
        presented = params.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request", "Missing required parameter: refresh_token")
        token_digest = digest(presented)
        requested = params.get("scope", "").split()
        async with self._services.database.core_transaction() as session:
            token = await refresh_tokens.find_refresh_token(session, token_digest=token_digest)
            if token is None or token.client_id != client.client_id:
                raise _invalid_grant("Unknown or invalid refresh token.")
            if token.revoked_at is not None or token.expires_at <= datetime.now(timezone.utc):
                raise _invalid_grant("Unknown or invalid refresh token.")
            result = LoginResult.from_json(token.grant)
            extra = [s for s in requested if s not in result.scopes]
            if extra:  # checked before rotation: a refused request leaves the token usable
                raise OAuthError("invalid_scope", f"Scope not granted originally: {' '.join(extra)}")
            rotated = await refresh_tokens.use_refresh_token(session, token_digest=token_digest)
            user = await user_store.get_user(session, user_id=result.user_id) if rotated else None
            if not rotated:
                await refresh_tokens.revoke_refresh_family(session, family_id=token.family_id)
                await record_event(
                    session, EventType.FAILED_REFRESH_EXCHANGE,
                    description="Refresh token reused: its whole family is revoked",
                    client_id=client.client_id, client_name=client.name, user_id=token.user_id, ip=context.ip,
                )
        if not rotated:
            raise _invalid_grant("Unknown or invalid refresh token.")
        user = _live(user)
        api = await self._services.tenant.resource_server(result.audience) if result.audience else None
        # The permissions are read again: one taken away since the login is gone from this
        # access token (the refresh token keeps its login's scopes, so none is added).
        granted = await grant_for_user(self._services, user_id=user.user_id, requested=requested or result.scopes, api=api)
        base = replace(result, scopes=granted.scopes, permissions=granted.permissions, access_scopes=None)
        result, run, user = await self._run_rules(
            "oauth2-refresh-token", client, user, base, params, context, requested=requested or result.scopes
        )
        return await self._issue(
            client, user, result, api, family_id=token.family_id, family_expires_at=token.expires_at,
            refresh_grant=LoginResult.from_json(token.grant),  # RFC 6749 §6: the refresh token keeps its scope
            record=self._success_recorder(
                run, EventType.SUCCESS_REFRESH_EXCHANGE, "Refresh Token for Access Token", client, user, context,
                protocol="oauth2-refresh-token",
            ),
        )

    # -- client_credentials ------------------------------------------------

    async def client_credentials(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, _grant_type: str) -> dict[str, Any]:
        client = caller.client
        if not caller.has_secret:
            raise OAuthError("unauthorized_client", "client_credentials needs a confidential client", 403)
        audience = await requested_audience(self._services.tenant, params.get("audience"))
        if not audience:
            raise OAuthError("access_denied", "No audience parameter was provided, and no default audience has been configured", 403)
        api = await self._services.tenant.resource_server(audience)
        if api is None:
            raise OAuthError("access_denied", f"Service not found: {audience}", 403)
        grant = await self._services.tenant.client_grant(client.client_id, audience)
        if grant is None:
            raise OAuthError(
                "access_denied",
                f'Client is not authorized to access "{audience}". You need to create a "client-grant" associated to this API.',
                403,
            )
        requested = params.get("scope", "").split()
        scopes = [s for s in requested if s in grant.scope] if requested else list(grant.scope)
        token, expires_in = await self._issuer.access_token(
            client=client, subject=f"{client.client_id}@clients", scopes=scopes, api=api, gty="client-credentials"
        )
        return {"access_token": token, "scope": " ".join(scopes), "expires_in": expires_in, "token_type": "Bearer"}

    # -- password and password-realm --------------------------------------

    async def password(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, grant_type: str) -> dict[str, Any]:
        client = caller.client
        username, password = params.get("username"), params.get("password")
        if not username or not password:
            raise OAuthError("invalid_request", "Missing required parameters: username and password")
        if grant_type == PASSWORD_REALM_GRANT:
            connection_name = params.get("realm")
        else:  # Auth0's "Default Directory": the tenant's default_directory, else the default database connection
            connection_name = (await tenant_settings(self._services)).default_directory
        if not connection_name:
            raise OAuthError("invalid_request", "Missing required parameter: realm")
        connection = await self._services.tenant.connection(connection_name)
        if connection is None or connection.strategy != "auth0":
            raise OAuthError("invalid_request", f"Unknown realm: {connection_name}")
        if client.client_id not in connection.enabled_clients:
            raise OAuthError("unauthorized_client", f"The connection {connection_name} is not enabled for this client.", 403)
        audience = await requested_audience(self._services.tenant, params.get("audience"))
        api = await self._services.tenant.resource_server(audience) if audience else None
        if audience and api is None:
            raise OAuthError("access_denied", f"Service not found: {audience}", 403)
        try:
            user = await authenticate_password(
                self._services, connection=connection_name, login=username, password=password, ip=context.ip,
                client_id=client.client_id, user_agent=context.user_agent,
            )
        except LoginFailure as failure:
            raise _password_failure(failure) from None
        try:
            result, run, user = await self.credential_login(
                "oauth2-resource-owner", client, user, api, params, context, method="pwd", amr=["pwd"],
                connection=connection_name,
            )
        except _MfaRequired as required:
            # The login's user: a rule's context.primary_user may have changed it (required.result).
            token = await issue_mfa_token(
                self._services, user_id=required.result.user_id, client_id=client.client_id, result=required.result.to_json(),
                execution=_execution(required.run, "oauth2-resource-owner", client, user),
            )
            async with self._services.database.transaction() as session:
                await record_event(
                    session, EventType.MFA_REQUIRED, description="Multifactor authentication required",
                    client_id=client.client_id, client_name=client.name, user_id=required.result.user_id, user_name=user.email,
                    ip=context.ip, connection=user.connection, user_agent=context.user_agent,
                )
            raise OAuthError("mfa_required", "Multifactor authentication required", 403, extra={"mfa_token": token}) from None
        return await self._issue(
            client, user, result, api, family_id=new_id("rtf_", 24), gty="password",
            record=self._success_recorder(
                run, EventType.SUCCESS_PASSWORD_EXCHANGE, "Password for Access Token", client, user, context,
                protocol="oauth2-resource-owner",
            ),
        )

    # -- mfa-otp and mfa-recovery-code -------------------------------------

    async def mfa(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, grant_type: str) -> dict[str, Any]:
        """Finish a password login that a rule sent to MFA: the mfa_token plus an OTP or a recovery code."""
        client = caller.client
        pending = await open_mfa_token(self._services, params.get("mfa_token"), client_id=client.client_id)
        new_recovery = None
        if grant_type == MFA_OTP_GRANT:
            if not params.get("otp"):
                raise OAuthError("invalid_request", "Missing required parameter: otp")
            passed = await verify_otp(self._services, user_id=pending.user_id, code=params["otp"], confirm_pending=True)
        else:
            if not params.get("recovery_code"):
                raise OAuthError("invalid_request", "Missing required parameter: recovery_code")
            new_recovery = await use_recovery_code(self._services, user_id=pending.user_id, code=params["recovery_code"])
            passed = new_recovery is not None
        user = await self._live_user(pending.user_id)
        if not passed:
            async with self._services.database.transaction() as session:
                await record_event(
                    session, EventType.MFA_FAILED, description="Wrong one-time code" if grant_type == MFA_OTP_GRANT else "Wrong recovery code",
                    client_id=client.client_id, client_name=client.name, user_id=user.user_id, ip=context.ip,
                )
            raise OAuthError("invalid_grant", "Invalid otp_code." if grant_type == MFA_OTP_GRANT else "Invalid recovery code.", 403)
        await spend_mfa_token(self._services, pending)
        now = int(time.time())
        result = LoginResult.from_json(pending.result)
        result = replace(result, amr=["mfa"], methods=[*result.methods, ["mfa", now * 1000]])
        api = await self._services.tenant.resource_server(result.audience) if result.audience else None

        async def record(session) -> None:
            await record_event(
                session, EventType.SUCCESS_PASSWORD_EXCHANGE, description="Password and MFA for Access Token",
                client_id=client.client_id, client_name=client.name, user_id=user.user_id, user_name=user.email,
                ip=context.ip, connection=user.connection, user_agent=context.user_agent, rules_execution=pending.execution,
            )

        response = await self._issue(client, user, result, api, family_id=new_id("rtf_", 24), gty="mfa", record=record)
        if new_recovery:
            response["recovery_code"] = new_recovery
        return response

    # -- passwordless/otp ----------------------------------------------------

    async def passwordless_otp(self, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext, _grant_type: str) -> dict[str, Any]:
        return await exchange_passwordless_otp(self, caller, params, context)

    # -- shared ------------------------------------------------------------

    async def credential_login(
        self, protocol: str, client: Client, user: User, api: ResourceServer | None, params: dict[str, str], context: LoginContext,
        *, method: str, amr: list[str] | None = None, connection: str | None = None,
    ) -> tuple[LoginResult, RuleRun, User]:
        """A back-channel login whose credentials were just checked (password, passwordless code):
        the login is counted (rules see it), then the rules run. Returns the result, the rules'
        run and the user as stored now; raises the rules' denial, or _MfaRequired. `connection` is
        the one the credentials were checked in (a linked secondary's, when `user` is its primary)."""
        now = time.time()
        requested = params.get("scope", "").split()
        granted = await grant_for_user(self._services, user_id=user.user_id, requested=requested, api=api)
        base = LoginResult(
            user_id=user.user_id,
            client_id=client.client_id,
            scopes=granted.scopes,
            permissions=granted.permissions,
            audience=api.identifier if api else None,
            auth_time=int(now),
            amr=list(amr or []),
            methods=[[method, int(now * 1000)]],
        )
        async with self._services.database.core_transaction() as session:
            user = await user_store.record_login(session, user_id=user.user_id, ip=context.ip) or user
        return await self._run_rules(protocol, client, user, base, params, context, requested=requested, connection=connection)

    async def _run_rules(
        self, protocol: str, client: Client, user: User, base: LoginResult, params: dict[str, str], context: LoginContext,
        *, requested: list[str], connection: str | None = None,
    ) -> tuple[LoginResult, RuleRun, User]:
        """The login rules of a back-channel grant; a denial becomes the OAuth error (logged as `f`).
        Returns the result, the run and the user the tokens are for (a rule's
        context.primary_user may switch to the primary the user is linked to)."""
        run = await run_login_rules(
            self._services, protocol=protocol, client=client, user=user, connection_name=connection or user.connection,
            request=RequestInfo(ip=context.ip, user_agent=context.user_agent, hostname=context.hostname, body=params),
            result=base,
        )
        outcome = await apply_rules(self._services, run, base)
        outcome, switched = await continue_as_primary_user(self._services, run, outcome, user=user, requested=requested)
        if switched.user_id != user.user_id:
            async with self._services.database.transaction() as session:
                switched = await user_store.record_login(session, user_id=switched.user_id, ip=context.ip) or switched
        if not isinstance(outcome, LoginDenial) and run.outcome is not None:
            outcome = _back_channel_steps(run, protocol, outcome)
            if isinstance(outcome, _MfaRequired):
                raise outcome
        if isinstance(outcome, LoginDenial):
            async with self._services.database.transaction() as session:
                await record_event(
                    session, EventType.FAILED_LOGIN, description=outcome.description, client_id=client.client_id,
                    client_name=client.name, user_id=user.user_id, user_name=user.email, ip=context.ip,
                    connection=user.connection, user_agent=context.user_agent,
                    rules_execution=_execution(run, protocol, client, user),
                )
            raise OAuthError(outcome.error, outcome.description, 401 if outcome.error == "unauthorized" else 403)
        return outcome, run, switched

    def _success_recorder(
        self, run: RuleRun, event: str, description: str, client: Client, user: User, context: LoginContext, *, protocol: str
    ) -> Callable[[Any], Awaitable[None]]:
        """What writes the log event of a successful exchange, in _issue's transaction."""

        async def record(session) -> None:
            await record_event(
                session, event, description=description, client_id=client.client_id, client_name=client.name,
                user_id=user.user_id, user_name=user.email, ip=context.ip, connection=user.connection,
                user_agent=context.user_agent, rules_execution=_execution(run, protocol, client, user),
            )

        return record

    async def _live_user(self, user_id: str) -> User:
        async with self._services.database.reader() as session:
            return _live(await user_store.get_user(session, user_id=user_id))

    async def _issue(
        self,
        client: Client,
        user: User,
        result: LoginResult,
        api: ResourceServer | None,
        *,
        family_id: str,
        gty: str | None = None,
        family_expires_at: datetime | None = None,
        refresh_grant: LoginResult | None = None,
        record: Callable[[Any], Awaitable[None]],
    ) -> dict[str, Any]:
        """Access token, ID token (with `openid`) and a refresh token (with `offline_access`, where allowed).

        The refresh token and what `record` writes (the exchange's log event) are stored in one
        transaction: one write per exchange, and never one without the other."""
        scopes = result.scopes
        access_token, expires_in = await self._issuer.access_token(
            client=client, subject=user.user_id, scopes=result.token_scopes, api=api,
            extra_claims=result.access_token_claims, gty=gty, jti=result.jti, permissions=result.permissions,
        )
        response: dict[str, Any] = {"access_token": access_token}
        if "openid" in scopes:
            response["id_token"] = await self._issuer.id_token(client=client, user=user, result=result)
        refresh_grant = refresh_grant or result
        refresh = new_handle(48) if _refresh_allowed(client, api, refresh_grant.scopes) else None
        async with self._services.database.core_transaction() as session:
            if refresh is not None:
                expires_at = family_expires_at or datetime.now(timezone.utc) + timedelta(
                    seconds=self._services.settings.refresh_token_lifetime
                )
                await refresh_tokens.insert_refresh_token(
                    session, token_digest=digest(refresh), family_id=family_id, client_id=client.client_id,
                    user_id=user.user_id, grant=refresh_grant.to_json(), expires_at=expires_at,
                )
            await record(session)
        if refresh is not None:
            response["refresh_token"] = refresh
        response.update({"scope": " ".join(result.token_scopes), "expires_in": expires_in, "token_type": "Bearer"})
        return response


_MFA_GRANTS = {MFA_OTP_GRANT: "password", MFA_RECOVERY_CODE_GRANT: "password"}


def _live(user: User | None) -> User:
    """The user tokens may be issued to: it exists, is no linked secondary, is not blocked."""
    if user is None or user.linked_to is not None:  # a linked secondary is no user of its own
        raise _invalid_grant("The user no longer exists.")
    if user.blocked:
        raise OAuthError("unauthorized", "user is blocked", 401)
    return user


def _back_channel_steps(run: RuleRun, protocol: str, result: LoginResult) -> LoginResult | LoginDenial | _MfaRequired:
    """What a back-channel grant does with a rule's redirect or MFA request (it cannot show a page)."""
    assert run.outcome is not None
    if run.outcome.redirect:
        run.outcome.warnings.append(f"context.redirect cannot be followed on {protocol}")
        return LoginDenial("interaction_required", "A rule asked to redirect the user, which this grant cannot do")
    if run.outcome.multifactor:
        mfa, problem = normalize_multifactor(run.outcome.multifactor)
        if problem:
            run.outcome.warnings.append(problem)
            return LoginDenial("access_denied", GENERIC_DENIAL)
        if protocol != "oauth2-resource-owner" or mfa["provider"] == "duo":
            return LoginDenial("interaction_required", "Multifactor authentication required: log in interactively")
        return _MfaRequired(result, run)
    return result


def _execution(run: RuleRun, protocol: str, client: Client, user: User) -> dict[str, Any] | None:
    return run.execution_values(protocol=protocol, client_id=client.client_id, user_id=user.user_id) if run.ran else None


def check_code(code, *, client: Client, params: dict[str, str]) -> None:
    """RFC 6749 §4.1.3 and RFC 7636 §4.6: the code belongs to this client, redirect URI and verifier."""
    if code.client_id != client.client_id:
        raise _invalid_grant("Invalid authorization code")
    if code.expires_at <= datetime.now(timezone.utc):
        raise _invalid_grant("Authorization code expired")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is not None and redirect_uri != code.redirect_uri:
        raise _invalid_grant("redirect_uri does not match the one used in the authorization request")
    verifier = params.get("code_verifier")
    if code.code_challenge:
        if not verifier:
            raise _invalid_grant("Missing code_verifier (PKCE)")
        if not hmac.compare_digest(s256(verifier), code.code_challenge):
            raise _invalid_grant("Failed to verify code verifier")
    elif verifier:
        raise _invalid_grant("code_verifier sent, but the authorization request had no code_challenge")


def _refresh_allowed(client: Client, api: ResourceServer | None, scopes: list[str]) -> bool:
    return "offline_access" in scopes and "refresh_token" in client.grant_types and (api is None or api.allow_offline_access)


def _password_failure(failure: LoginFailure) -> OAuthError:
    if failure.code == "too_many_attempts":
        return OAuthError("too_many_attempts", failure.message, 429)
    if failure.code == "blocked_user":
        return OAuthError("unauthorized", failure.message, 401)
    return OAuthError("invalid_grant", failure.message, 403)
