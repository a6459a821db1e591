"""The `user` and `context` a rule receives, built the way a real login builds them.

`make_user()` and `make_context(protocol)` build the storage records a login would hold (a
User with its identity, the application's Client, the Connection) and hand them to the
production builders, `bastion.rules.context.rule_user` and `rule_context`: the shapes are
production's, never re-typed here. Only the per-protocol inputs (which request parameters,
which authentication method, whether there is a session, SAML's starting configuration) are
chosen here, from what each protocol's code passes (login/pipeline.py, oidc/grants.py,
passwordless/grant.py, saml/routes.py).

Defaults: a verified alice@example.com on the default database connection, logging in for
the first time (`logins_count` 1), on the application "My App", from 203.0.113.7.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from bastion.rules.context import RequestInfo, rule_context, rule_user
from bastion.saml.configuration import effective_configuration
from bastion.security.handles import new_id
from bastion.storage.records import Client, Connection, Identity, User
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.tenant.users import default_picture

__all__ = [
    "PROTOCOLS",
    "DEFAULT_ISSUER",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_NAME",
    "DEFAULT_CONNECTION",
    "DEFAULT_IP",
    "DEFAULT_USER_AGENT",
    "DEFAULT_SAML_ACS_URL",
    "saml_starting_configuration",
    "make_user",
    "make_context",
]

# Every value of context.protocol a Bastion login gives rules (docs/rules.md, "When rules run").
PROTOCOLS = (
    "oidc-basic-profile",  # browser login, authorization code flow
    "redirect-callback",  # back at /continue after a rule's redirect
    "oauth2-resource-owner",  # password and password-realm grants
    "oauth2-password",  # Auth0's passwordless/otp grant
    "oauth2-refresh-token",  # refresh_token grant
    "samlp",  # SAML single sign-on
)

DEFAULT_ISSUER = "https://auth.example.com"
DEFAULT_CLIENT_ID = "my-app-client-id"
DEFAULT_CLIENT_NAME = "My App"
DEFAULT_CALLBACK = "https://app.example.com/callback"
DEFAULT_IP = "203.0.113.7"
DEFAULT_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
DEFAULT_SAML_ACS_URL = "https://sp.example.com/saml/acs"
# The default database connection's options, as bootstrap creates it (tenant/bootstrap.py).
DEFAULT_DATABASE_OPTIONS = {"passwordPolicy": "fair", "brute_force_protection": True, "disable_signup": False}
PASSWORDLESS_OTP_GRANT = "http://auth0.com/oauth/grant-type/passwordless/otp"

_PASSWORDLESS_STRATEGIES = ("email", "sms")


def _time(value: datetime | str | None, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def make_user(
    *,
    user_id: str = "auth0|alice",
    email: str | None = "alice@example.com",
    email_verified: bool = True,
    username: str | None = None,
    phone_number: str | None = None,
    phone_verified: bool = False,
    name: str | None = None,
    nickname: str | None = None,
    given_name: str | None = None,
    family_name: str | None = None,
    picture: str | None = None,
    app_metadata: Mapping[str, Any] | None = None,
    user_metadata: Mapping[str, Any] | None = None,
    logins_count: int = 1,
    blocked: bool = False,
    connection: str = DEFAULT_CONNECTION,
    provider: str | None = None,
    is_social: bool = False,
    linked_identities: Sequence[Mapping[str, Any]] = (),
    created_at: datetime | str | None = None,
    updated_at: datetime | str | None = None,
    last_login: datetime | str | None = None,
    last_ip: str | None = DEFAULT_IP,
    roles: Sequence[str] | None = None,
    permissions: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    multifactor: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The rule's `user` for this account, as `rule_user` builds it from the stored user.

    Profile defaults follow a database sign-up (name = email, nickname = the email's local
    part, the Gravatar picture). `logins_count` and `last_login` count the current login, as
    in production. `linked_identities` are secondary accounts (`{"provider", "user_id",
    "connection", "is_social", "profile_data"}`), listed after the user's own identity.
    `roles`, `permissions` and `groups` are what the Authorization Extension's model adds when
    the tenant has roles or groups (omitted otherwise, as in production). `extra` adds
    attributes as-is (what an earlier rule may have set).
    """
    now = datetime.now(timezone.utc)
    display = name or email or username or user_id
    local_id = user_id.partition("|")[2] or user_id
    own = Identity(
        provider=provider or (connection if is_social or connection in _PASSWORDLESS_STRATEGIES else "auth0"),
        connection=connection, external_id=local_id, is_social=is_social, profile_data={},
    )
    linked = [
        Identity(
            provider=str(i.get("provider") or "auth0"), connection=str(i.get("connection") or i.get("provider") or "auth0"),
            external_id=str(i.get("user_id") or ""), is_social=bool(i.get("is_social", i.get("isSocial", False))),
            profile_data=dict(i.get("profile_data") or i.get("profileData") or {}),
            linked_user_id=f"{i.get('provider') or 'auth0'}|{i.get('user_id')}",
        )
        for i in linked_identities
    ]
    record = User(
        user_id=user_id, connection=connection, email=email, email_verified=email_verified, username=username,
        phone_number=phone_number, phone_verified=phone_verified, password_hash=None,
        name=display, nickname=nickname or (email.split("@")[0] if email else username or display),
        given_name=given_name, family_name=family_name, picture=picture or default_picture(email, display),
        app_metadata=copy.deepcopy(dict(app_metadata or {})), user_metadata=copy.deepcopy(dict(user_metadata or {})),
        blocked=blocked, created_at=_time(created_at, now), updated_at=_time(updated_at, now),
        last_login=_time(last_login, now) if logins_count else None, last_ip=last_ip if logins_count else None,
        logins_count=logins_count, last_password_reset=None, identities=[own, *linked],
    )
    user = rule_user(record)
    if multifactor is not None:
        user["multifactor"] = list(multifactor)
    # login/rules_step.user_authorization: present only when the tenant has roles or groups.
    for key, values in (("roles", roles), ("permissions", permissions), ("groups", groups)):
        if values is not None:
            user[key] = list(values)
    user.update(copy.deepcopy(dict(extra or {})))
    return user


def _client(client_id: str, client_name: str, client_metadata: Mapping[str, Any] | None, callback: str) -> Client:
    now = datetime.now(timezone.utc)
    return Client(
        client_id=client_id, name=client_name, description="", app_type="regular_web", is_first_party=True,
        callbacks=[callback], allowed_logout_urls=[], web_origins=[], allowed_origins=[],
        grant_types=["authorization_code", "refresh_token", "password"], token_endpoint_auth_method="client_secret_post",
        client_secret_sealed=None, client_secret_digest=None, client_metadata=dict(client_metadata or {}),
        jwt_configuration={}, refresh_token={}, addons={}, is_system=False, created_at=now, updated_at=now,
    )


def _connection(name: str, strategy: str | None, options: Mapping[str, Any] | None) -> Connection:
    if strategy is None:
        strategy = name if name in _PASSWORDLESS_STRATEGIES else "auth0"
    if options is None:
        options = DEFAULT_DATABASE_OPTIONS if name == DEFAULT_CONNECTION else {}
    return Connection(
        id=f"con_{name.lower().replace('-', '_')[:24]}", name=name, strategy=strategy, options=dict(options),
        enabled_clients=[], is_domain_connection=False, created_at=datetime.now(timezone.utc),
    )


def _logins_record(logins_count: int) -> User:
    """rule_context reads the login counter from the stored user; nothing else."""
    now = datetime.now(timezone.utc)
    return User(
        user_id="", connection="", email=None, email_verified=False, username=None, phone_number=None,
        phone_verified=False, password_hash=None, name=None, nickname=None, given_name=None, family_name=None,
        picture=None, app_metadata={}, user_metadata={}, blocked=False, created_at=now, updated_at=now, last_login=now,
        last_ip=None, logins_count=logins_count, last_password_reset=None,
    )


def _request_parameters(
    protocol: str, *, client_id: str, callback: str, login: str | None, scope: str, audience: str | None, connection: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """(query, body) as each protocol's code hands them to RequestInfo, before rule_context
    removes the secret ones (password, code, otp, refresh_token...)."""
    with_audience = {"audience": audience} if audience else {}
    if protocol == "oidc-basic-profile":
        return {"client_id": client_id, "response_type": "code", "redirect_uri": callback, "scope": scope,
                "state": "af0ifjsldkj", **with_audience}, {}
    if protocol == "oauth2-resource-owner":
        return {}, {"grant_type": "password", "client_id": client_id, "username": login or "", "password": "********",
                    "scope": scope, **with_audience}
    if protocol == "oauth2-password":
        return {}, {"grant_type": PASSWORDLESS_OTP_GRANT, "client_id": client_id, "realm": connection,
                    "username": login or "", "otp": "123456", "scope": scope, **with_audience}
    if protocol == "oauth2-refresh-token":
        return {}, {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": "********"}
    return {}, {}  # samlp (IdP-initiated: no SAMLRequest) and redirect-callback (what the page sent: none)


def make_context(
    protocol: str = "oidc-basic-profile",
    *,
    user: Mapping[str, Any] | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    client_name: str = DEFAULT_CLIENT_NAME,
    client_metadata: Mapping[str, Any] | None = None,
    connection: str | None = None,
    connection_strategy: str | None = None,
    connection_options: Mapping[str, Any] | None = None,
    audience: str | None = None,
    scope: str = "openid profile email",
    ip: str = DEFAULT_IP,
    user_agent: str | None = DEFAULT_USER_AGENT,
    issuer: str = DEFAULT_ISSUER,
    query: Mapping[str, str] | None = None,
    body: Mapping[str, str] | None = None,
    methods: Sequence[tuple[str, int]] | None = None,
    session_id: str | None = None,
    roles: Sequence[str] | None = None,
    original_protocol: str | None = None,
    saml_addon: Mapping[str, Any] | None = None,
    saml_configuration: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The rule's `context` for a login of `user` (default: `make_user()`) by `protocol`.

    Per protocol, as production builds it:
    - `oidc-basic-profile`: the authorization request's parameters in `request.query`, a
      session id, the `pwd` method;
    - `redirect-callback`: `original_protocol` (default `oidc-basic-profile`), `query`/`body`
      are what the page sent back to /continue (default: nothing);
    - `oauth2-resource-owner`: the token request in `request.body` (without the password),
      no session;
    - `oauth2-password` (passwordless OTP): the token request, an `email` (or `sms`)
      connection and method, no session;
    - `oauth2-refresh-token`: `grant_type`/`client_id` in `request.body`, the original
      login's session and methods;
    - `samlp`: `saml_configuration` as the application's `samlp` addon gives it
      (`saml_addon`, Auth0's camelCase; default: no settings, so Bastion's defaults) for
      an IdP-initiated login to `DEFAULT_SAML_ACS_URL`; `saml_configuration` overrides
      fields of it (snake_case).

    `query`, `body`, `methods` and `session_id` replace the protocol's defaults; `extra`
    sets other context fields last.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: Bastion's rules see one of {', '.join(PROTOCOLS)}")
    user = user if user is not None else make_user()
    identities = user.get("identities") or []
    user_connection = identities[0].get("connection") if identities and isinstance(identities[0], Mapping) else None
    if connection is None:
        connection = "email" if protocol == "oauth2-password" and user_connection in (None, DEFAULT_CONNECTION) else (user_connection or DEFAULT_CONNECTION)
    login = user.get("email") or user.get("phone_number") or user.get("username")
    default_query, default_body = _request_parameters(
        protocol, client_id=client_id, callback=DEFAULT_CALLBACK, login=login, scope=scope, audience=audience, connection=connection,
    )
    now_ms = int(time.time() * 1000)
    if methods is None:
        if protocol == "oauth2-password":
            methods = [(_connection(connection, connection_strategy, connection_options).strategy, now_ms)]
        else:
            methods = [("pwd", now_ms)]
    back_channel = protocol in ("oauth2-resource-owner", "oauth2-password")
    if session_id is None and not back_channel:
        session_id = new_id(length=32)
    if roles is None:
        roles = [r for r in user.get("roles") or [] if isinstance(r, str)]
    context = rule_context(
        issuer=issuer,
        protocol=protocol,
        client=_client(client_id, client_name, client_metadata, DEFAULT_SAML_ACS_URL if protocol == "samlp" else DEFAULT_CALLBACK),
        connection=_connection(connection, connection_strategy, connection_options),
        request=RequestInfo(
            ip=ip, user_agent=user_agent, hostname=urlsplit(issuer).hostname or "localhost",
            query=dict(default_query if query is None else query), body=dict(default_body if body is None else body),
        ),
        user=_logins_record(int(user.get("logins_count") or 0)),
        session_id=session_id,
        methods=[(str(m), int(t)) for m, t in methods],
        audience=audience,
        roles=roles,
    )
    if protocol == "redirect-callback":  # login/pipeline.py: the first run's protocol is kept
        context["original_protocol"] = original_protocol or "oidc-basic-profile"
    elif original_protocol is not None:
        raise ValueError("original_protocol is for protocol='redirect-callback' only")
    if protocol == "samlp" or context.get("original_protocol") == "samlp":
        context["saml_configuration"] = saml_starting_configuration(issuer, saml_addon, saml_configuration)
    elif saml_addon is not None or saml_configuration is not None:
        raise ValueError("saml_addon and saml_configuration are for SAML logins (protocol='samlp') only")
    context.update(copy.deepcopy(dict(extra or {})))
    return context


def saml_starting_configuration(
    issuer: str = DEFAULT_ISSUER, addon: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`context.saml_configuration` at the start of an IdP-initiated SAML login (saml/routes.py)."""
    configuration = effective_configuration(dict(addon or {}), acs_url=DEFAULT_SAML_ACS_URL, sp_entity_id=None)
    configuration["issuer"] = configuration.get("issuer") or f"urn:{urlsplit(issuer).hostname}"
    if not configuration.get("audience"):  # IdP-initiated, no audience configured: the ACS URL stands in
        configuration["audience"] = DEFAULT_SAML_ACS_URL
    configuration.update(copy.deepcopy(dict(overrides or {})))
    return configuration
