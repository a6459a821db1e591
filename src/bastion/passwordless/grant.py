"""Auth0's passwordless OTP grant at /oauth/token:

    grant_type=http://auth0.com/oauth/grant-type/passwordless/otp
    client_id, [client_secret], realm=email|sms, username=<email or phone number>, otp=<code>,
    [scope], [audience]

The code must come from POST /passwordless/start with `send: code` for the same client.
Like the password grant, the login rules run (`context.protocol` is `oauth2-password`, the
protocol Auth0 gives its credential-exchange grants; `context.authentication.methods` names
`email` or `sms`), a rule's redirect or MFA request cannot be followed here
(`interaction_required`), and the answer is the password grant's: access token, ID token
with `openid`, refresh token with `offline_access`. A wrong code logs `fepotpft`; success logs `s`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import OAuthError
from bastion.events import EventType
from bastion.login.pipeline import LoginContext
from bastion.oidc.client_auth import AuthenticatedClient
from bastion.passwordless.channels import ConnectionUnavailable, normalize_recipient, passwordless_connection
from bastion.passwordless.login import (
    FAILED_OTP_EXCHANGE,
    CodeRejected,
    SignupDisabled,
    redeem_passwordless,
    wrong_code_message,
)
from bastion.security.handles import new_id
from bastion.tenant.tenant_settings import requested_audience

if TYPE_CHECKING:
    from bastion.oidc.grants import TokenGrants

__all__ = ["PASSWORDLESS_OTP_GRANT", "PROTOCOL", "exchange_passwordless_otp"]

PASSWORDLESS_OTP_GRANT = "http://auth0.com/oauth/grant-type/passwordless/otp"
PROTOCOL = "oauth2-password"


async def exchange_passwordless_otp(
    grants: TokenGrants, caller: AuthenticatedClient, params: dict[str, str], context: LoginContext
) -> dict[str, Any]:
    services = grants._services
    client = caller.client
    missing = [name for name in ("realm", "username", "otp") if not params.get(name)]
    if missing:
        raise OAuthError("invalid_request", f"Missing required parameter: {missing[0]}")
    try:
        connection = await passwordless_connection(services, params["realm"], client_id=client.client_id)
    except ConnectionUnavailable as problem:
        if problem.reason == "disabled":
            raise OAuthError("unauthorized_client", f"The connection {params['realm']} is not enabled for this client.", 403) from None
        raise OAuthError("invalid_request", f"Unknown realm: {params['realm']}") from None
    audience = await requested_audience(services.tenant, params.get("audience"))
    api = await services.tenant.resource_server(audience) if audience else None
    if audience and api is None:
        raise OAuthError("access_denied", f"Service not found: {audience}", 403)
    recipient = normalize_recipient(connection.strategy, params["username"])
    if recipient is None:
        raise OAuthError("invalid_grant", wrong_code_message(connection.strategy), 403)
    try:
        redeemed = await redeem_passwordless(
            services, connection=connection, client=client, recipient=recipient, code=params["otp"], send="code",
            context=context, failure_event=FAILED_OTP_EXCHANGE,
        )
    except CodeRejected as rejected:
        if rejected.reason == "exhausted":
            raise OAuthError("invalid_grant", "You've reached the maximum number of attempts. Please try to login again.", 403) from None
        raise OAuthError("invalid_grant", wrong_code_message(connection.strategy), 403) from None
    except SignupDisabled:
        raise OAuthError("access_denied", "Public signup is disabled for this connection.", 403) from None
    user = redeemed.user
    if user.blocked:
        raise OAuthError("unauthorized", "user is blocked", 401)
    result, run, user = await grants.credential_login(PROTOCOL, client, user, api, params, context, method=connection.strategy,
                                                     connection=connection.name)
    return await grants._issue(
        client, user, result, api, family_id=new_id("rtf_", 24),
        record=grants._success_recorder(run, EventType.SUCCESS_LOGIN, "Successful login", client, user, context, protocol=PROTOCOL),
    )
