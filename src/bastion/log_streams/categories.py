"""Auth0's log stream filter categories, and the event type codes of each that Bastion emits.

A stream's filters name categories (`{"type": "category", "name": "auth.login.success"}`); the
poller turns them into the set of type codes it selects in SQL (`TypeFilter`). `other` selects
every code that no category lists. The table is documented in docs/log-streams.md.
"""

from __future__ import annotations

from bastion.events import EventType as E
from bastion.storage.log_streams import TypeFilter

__all__ = ["CATEGORIES", "type_filter", "type_name"]

# Every category Auth0 accepts; a category Bastion has no events for is accepted and selects nothing.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "auth.login.success": (E.SUCCESS_LOGIN,),
    "auth.login.fail": (E.FAILED_LOGIN, E.FAILED_LOGIN_PASSWORD, E.FAILED_LOGIN_USERNAME),
    "auth.login.notification": (),
    "auth.logout.success": (E.SUCCESS_LOGOUT,),
    "auth.logout.fail": (),
    "auth.signup.success": (E.SUCCESS_SIGNUP,),
    "auth.signup.fail": (E.FAILED_SIGNUP,),
    "auth.silent_auth.success": (),
    "auth.silent_auth.fail": (),
    "auth.token_exchange.success": (
        E.SUCCESS_CODE_EXCHANGE, E.SUCCESS_CLIENT_CREDENTIALS, E.SUCCESS_PASSWORD_EXCHANGE, E.SUCCESS_REFRESH_EXCHANGE,
    ),
    "auth.token_exchange.fail": (
        E.FAILED_CODE_EXCHANGE, E.FAILED_CLIENT_CREDENTIALS, E.FAILED_PASSWORD_EXCHANGE, E.FAILED_REFRESH_EXCHANGE,
    ),
    "auth.ancillary.success": (),
    "auth.ancillary.fail": (),
    "management.success": (E.SUCCESS_API_OPERATION,),
    "management.fail": (E.FAILED_API_OPERATION,),
    "user.success": (
        E.SUCCESS_CHANGE_PASSWORD, E.SUCCESS_CHANGE_PASSWORD_REQUEST, E.SUCCESS_REVOCATION,
        E.SUCCESS_VERIFICATION_EMAIL, E.SUCCESS_VERIFICATION_EMAIL_REQUEST,
    ),
    "user.fail": (E.FAILED_VERIFICATION_EMAIL, E.FAILED_NOTIFICATION),
    "user.notification": (E.MFA_ENROLLED,),
    "system.notification": (E.BLOCKED_ACCOUNT,),
    "scim.event": (),
    "actions": (),
    "other": (),  # every code not listed above: MFA challenges and recovery (gd_auth_*, gd_recovery_*, mfar)
}

CATEGORIZED_TYPES: frozenset[str] = frozenset(code for codes in CATEGORIES.values() for code in codes)

# Auth0's names of the event types, used as Segment's event names.
_TYPE_NAMES = {
    E.SUCCESS_LOGIN: "Success Login",
    E.FAILED_LOGIN: "Failed Login",
    E.FAILED_LOGIN_PASSWORD: "Failed Login (Incorrect Password)",
    E.FAILED_LOGIN_USERNAME: "Failed Login (Invalid Email/Username)",
    E.BLOCKED_ACCOUNT: "Blocked Account",
    E.SUCCESS_SIGNUP: "Success Signup",
    E.FAILED_SIGNUP: "Failed Signup",
    E.SUCCESS_LOGOUT: "Success Logout",
    E.SUCCESS_CODE_EXCHANGE: "Success Exchange (Authorization Code for Access Token)",
    E.FAILED_CODE_EXCHANGE: "Failed Exchange (Authorization Code for Access Token)",
    E.SUCCESS_CLIENT_CREDENTIALS: "Success Exchange (Client Credentials for Access Token)",
    E.FAILED_CLIENT_CREDENTIALS: "Failed Exchange (Client Credentials for Access Token)",
    E.SUCCESS_PASSWORD_EXCHANGE: "Success Exchange (Password for Access Token)",
    E.FAILED_PASSWORD_EXCHANGE: "Failed Exchange (Password for Access Token)",
    E.SUCCESS_REFRESH_EXCHANGE: "Success Exchange (Refresh Token for Access Token)",
    E.FAILED_REFRESH_EXCHANGE: "Failed Exchange (Rotating Refresh Token)",
    E.SUCCESS_REVOCATION: "Success Revocation",
    E.SUCCESS_CHANGE_PASSWORD_REQUEST: "Success Change Password Request",
    E.SUCCESS_CHANGE_PASSWORD: "Success Change Password",
    E.SUCCESS_VERIFICATION_EMAIL: "Success Verification Email",
    E.SUCCESS_VERIFICATION_EMAIL_REQUEST: "Success Verification Email Request",
    E.FAILED_VERIFICATION_EMAIL: "Failed Verification Email",
    E.FAILED_NOTIFICATION: "Failed Sending Notification",
    E.SUCCESS_API_OPERATION: "Success API Operation",
    E.FAILED_API_OPERATION: "Failed API Operation",
    E.MFA_REQUIRED: "Multi-factor Authentication Required",
    E.MFA_SUCCEEDED: "MFA Authentication Succeeded",
    E.MFA_FAILED: "MFA Authentication Failed",
    E.MFA_ENROLLED: "MFA Enrollment Complete",
    E.MFA_RECOVERY_SUCCEEDED: "MFA Recovery Succeeded",
    E.MFA_RECOVERY_FAILED: "MFA Recovery Failed",
}


def type_name(code: str) -> str:
    return _TYPE_NAMES.get(code, code)


def type_filter(filters: list[dict]) -> TypeFilter | None:
    """None (every event) when a stream has no filters."""
    names = [f["name"] for f in filters if f.get("type") == "category"]
    if not names:
        return None
    return TypeFilter(
        types=frozenset(code for name in names for code in CATEGORIES.get(name, ())), others="other" in names,
        categorized=CATEGORIZED_TYPES,
    )
