"""The tenant's settings as Bastion uses them (Auth0's /api/v2/tenants/settings).

The database keeps only what the tenant set (storage/tenant_settings.py); what it never set
is Bastion's own configuration, read here each time, so `GET /api/v2/tenants/settings` shows
what Bastion actually does:

    session lifetimes      BASTION_SESSION_LIFETIME / BASTION_SESSION_IDLE_LIFETIME
    friendly_name          "Bastion", the name the pages show
    default_directory      Username-Password-Authentication, the password grant's connection

A lifetime has two views, hours (`session_lifetime`, a number) and minutes
(`session_lifetime_in_minutes`, an integer); both are stored, each as written
(management/tenant_settings.py keeps them in step), and the hours decide.

What takes effect (docs/management-api.md "Tenant settings"): the SSO session lifetimes and
cookie mode (login/sso.py, login/pipeline.py, login/flow.py), `default_audience` (/authorize and
every /oauth/token grant that takes an audience), `default_directory` (the password grant),
`friendly_name` and `picture_url` (the login page), `allowed_logout_urls` (/v2/logout without
a client_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.settings import Settings
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.tenant.cache import TenantCache

__all__ = [
    "PRODUCT_NAME",
    "LIFETIMES",
    "TenantSettings",
    "tenant_settings",
    "requested_audience",
    "effective_settings",
    "settings_json",
    "hours_value",
]

PRODUCT_NAME = "Bastion"

# hours field -> minutes field
LIFETIMES = {
    "session_lifetime": "session_lifetime_in_minutes",
    "idle_session_lifetime": "idle_session_lifetime_in_minutes",
    "ephemeral_session_lifetime": "ephemeral_session_lifetime_in_minutes",
    "idle_ephemeral_session_lifetime": "idle_ephemeral_session_lifetime_in_minutes",
}


@dataclass(frozen=True)
class TenantSettings:
    """The settings that change what Bastion does, with the defaults filled in."""

    friendly_name: str  # the name the login page shows
    picture_url: str | None  # the logo the login page shows
    default_audience: str | None  # the API of a request that names none
    default_directory: str  # the connection of the password grant
    persistent_sessions: bool  # session_cookie.mode: the SSO cookie outlives the browser
    session_lifetime: int  # seconds: an SSO session's absolute lifetime
    idle_session_lifetime: int  # seconds: how long an SSO session may go unused
    allowed_logout_urls: tuple[str, ...]  # /v2/logout's returnTo without a client_id


def hours_value(seconds: float) -> int | float:
    """Seconds as Auth0's hours: an integer when whole (168, not 168.0)."""
    hours = seconds / 3600
    return int(hours) if hours == int(hours) else hours


def _seconds(stored: dict[str, Any], hours_key: str, default: int) -> int:
    hours = stored.get(hours_key)
    if isinstance(hours, (int, float)) and not isinstance(hours, bool):
        return max(60, round(hours * 3600))
    minutes = stored.get(LIFETIMES[hours_key])
    if isinstance(minutes, int) and not isinstance(minutes, bool):
        return max(60, minutes * 60)
    return default


def _text(stored: dict[str, Any], key: str) -> str | None:
    """A string setting; "" means not set, as Auth0's own defaults are ""."""
    value = stored.get(key)
    return value if isinstance(value, str) and value else None


def _lifetimes(stored: dict[str, Any], settings: Settings) -> dict[str, int]:
    """Every lifetime in seconds: what the tenant set, else the process settings. A
    non-persistent (ephemeral) session lasts as long as a persistent one unless the tenant
    sets its own lifetimes."""
    absolute = _seconds(stored, "session_lifetime", settings.session_lifetime)
    idle = _seconds(stored, "idle_session_lifetime", settings.session_idle_lifetime)
    return {
        "session_lifetime": absolute,
        "idle_session_lifetime": idle,
        "ephemeral_session_lifetime": _seconds(stored, "ephemeral_session_lifetime", absolute),
        "idle_ephemeral_session_lifetime": _seconds(stored, "idle_ephemeral_session_lifetime", idle),
    }


def effective_settings(stored: dict[str, Any], settings: Settings) -> TenantSettings:
    lifetimes = _lifetimes(stored, settings)
    cookie = stored.get("session_cookie")
    persistent = not (isinstance(cookie, dict) and cookie.get("mode") == "non-persistent")
    prefix = "" if persistent else "ephemeral_"
    logout_urls = stored.get("allowed_logout_urls")
    return TenantSettings(
        friendly_name=_text(stored, "friendly_name") or PRODUCT_NAME,
        picture_url=_text(stored, "picture_url"),
        default_audience=_text(stored, "default_audience"),
        default_directory=_text(stored, "default_directory") or DEFAULT_CONNECTION,
        persistent_sessions=persistent,
        session_lifetime=lifetimes[f"{prefix}session_lifetime"],
        idle_session_lifetime=lifetimes[f"idle_{prefix}session_lifetime"],
        allowed_logout_urls=tuple(u for u in logout_urls if isinstance(u, str)) if isinstance(logout_urls, list) else (),
    )


async def tenant_settings(services: Services) -> TenantSettings:
    """The tenant's settings now (through the tenant cache: BASTION_CACHE_TTL)."""
    return effective_settings(await services.tenant.tenant_settings(), services.settings)


async def requested_audience(tenant: TenantCache, audience: str | None) -> str | None:
    """The API a request is for: the `audience` it names, else the tenant's `default_audience`
    (Auth0's "Default Audience": as if every request named it)."""
    return audience or _text(await tenant.tenant_settings(), "default_audience")


def settings_json(stored: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The body of GET /api/v2/tenants/settings: what was set, and the defaults for the rest."""
    body: dict[str, Any] = {
        "friendly_name": PRODUCT_NAME,
        "picture_url": "",
        "support_email": "",
        "support_url": "",
        "allowed_logout_urls": [],
        "enabled_locales": ["en"],
        "default_audience": "",
        "default_directory": DEFAULT_CONNECTION,
        "session_cookie": {"mode": "persistent"},
        "flags": {},
    }
    for hours_key, seconds in _lifetimes(stored, settings).items():
        minutes_key = LIFETIMES[hours_key]
        body[hours_key] = hours_value(seconds)
        body[minutes_key] = round(seconds / 60)
    for key, value in stored.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body
