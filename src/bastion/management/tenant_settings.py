"""/api/v2/tenants/settings: Auth0's tenant settings (docs/management-api.md "Tenant settings").

    GET    read:tenant_settings     every setting: what was set, Bastion's defaults for the rest;
                                    `fields` and `include_fields` pick or drop top-level settings
    PATCH  update:tenant_settings   Auth0's merge: a top-level null resets a (nullable) setting,
                                    an object (`flags`) is merged key by key, anything else replaces

The body is checked as Auth0 checks it: an unknown top-level property is a 400 `invalid_body`
"Additional properties not allowed", a wrong type a 400 naming the property. It is checked
here rather than by FastAPI so the messages are Auth0's (the app's handler words them
pydantic's way); the OpenAPI document still describes it (`openapi_extra`).

Every property of Auth0's update schema is accepted and kept, so a tenant exported from Auth0
(auth0-deploy-cli's tenant.json) imports; tenant/tenant_settings.py says which ones change
what Bastion does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints, ValidationError

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.storage import tenant_settings as settings_store
from bastion.tenant.tenant_settings import LIFETIMES, hours_value, settings_json
from bastion.tenant.users import is_valid_email

__all__ = ["router", "TenantSettingsUpdate"]

router = APIRouter()

MAX_URL = 2048
MAX_MINUTES = 365 * 24 * 60  # a year, Auth0's largest (enterprise) session lifetime


# -- the body ------------------------------------------------------------------------------


def _absolute_url_or_empty(value: str) -> str:
    if value and not (value.startswith(("https://", "http://")) and len(value) > len("https://")):
        raise ValueError("Object didn't pass validation for format absolute-uri-or-empty: " + value[:100])
    return value


def _https_url_or_empty(value: str) -> str:
    if value and not (value.startswith("https://") and len(value) > len("https://")):
        raise ValueError("Object didn't pass validation for format absolute-https-uri-or-empty: " + value[:100])
    return value


def _email_or_empty(value: str) -> str:
    if value and not is_valid_email(value):
        raise ValueError("Object didn't pass validation for format email-or-empty: " + value[:100])
    return value


def _url_with_placeholders(value: str) -> str:
    if "://" not in value:
        raise ValueError("Object didn't pass validation for format url-with-placeholders: " + value[:100])
    return value


Url = Annotated[str, StringConstraints(max_length=MAX_URL), AfterValidator(_absolute_url_or_empty)]
HttpsUrl = Annotated[str, StringConstraints(max_length=MAX_URL), AfterValidator(_https_url_or_empty)]
LogoutUrl = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL), AfterValidator(_url_with_placeholders)]
# Auth0's locale codes: "en", "fr-CA", "es-419", "cnr" (its list grows: the form is checked, not the list)
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-([A-Z]{2}|[0-9]{3}))?$")]
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Hours = Annotated[float, Field(ge=1 / 60, le=MAX_MINUTES / 60)]
Minutes = Annotated[int, Field(ge=1, le=MAX_MINUTES)]


class _Strict(BaseModel):
    """JSON types as Auth0 checks them: "5" is not a number, 1 is not a boolean."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PageCustomization(_Strict):
    """change_password, guardian_mfa_page (stored; Bastion's pages are its own)."""

    enabled: StrictBool = None  # type: ignore[assignment]
    html: Annotated[str, StringConstraints(max_length=100_000)] = None  # type: ignore[assignment]


class ErrorPage(_Strict):
    html: Annotated[str, StringConstraints(max_length=100_000)] = None  # type: ignore[assignment]
    show_log_link: StrictBool = None  # type: ignore[assignment]
    url: Url = None  # type: ignore[assignment]


class DeviceFlow(_Strict):
    charset: Literal["base20", "digits"] = None  # type: ignore[assignment]
    mask: Annotated[str, StringConstraints(min_length=1, max_length=20)] = None  # type: ignore[assignment]


class SessionCookie(_Strict):
    mode: Literal["persistent", "non-persistent"]


class Sessions(_Strict):
    oidc_logout_prompt_enabled: StrictBool = None  # type: ignore[assignment]


class OidcLogout(_Strict):
    rp_logout_end_session_endpoint_discovery: StrictBool = None  # type: ignore[assignment]


class TenantSettingsUpdate(_Strict):
    """Update tenant settings (Auth0's UpdateTenantSettingsRequestContent)."""

    # A field typed without `None` refuses null, as Auth0 does (`"friendly_name": null` is a
    # 400): its `= None` only means "not sent". `| None` fields take null: it resets them.
    friendly_name: Annotated[str, StringConstraints(max_length=255)] = None  # type: ignore[assignment]
    picture_url: Url = None  # type: ignore[assignment]
    support_email: Annotated[str, StringConstraints(max_length=320), AfterValidator(_email_or_empty)] = None  # type: ignore[assignment]
    support_url: Url = None  # type: ignore[assignment]
    allowed_logout_urls: Annotated[list[LogoutUrl], Field(max_length=100)] = None  # type: ignore[assignment]
    enabled_locales: Annotated[list[Locale], Field(min_length=1, max_length=100)] = None  # type: ignore[assignment]
    default_audience: Annotated[str, StringConstraints(max_length=600)] = None  # type: ignore[assignment]
    default_directory: Annotated[str, StringConstraints(max_length=128)] = None  # type: ignore[assignment]
    default_redirection_uri: HttpsUrl = None  # type: ignore[assignment]
    session_lifetime: Hours = None  # type: ignore[assignment]
    idle_session_lifetime: Hours = None  # type: ignore[assignment]
    ephemeral_session_lifetime: Hours = None  # type: ignore[assignment]
    idle_ephemeral_session_lifetime: Hours = None  # type: ignore[assignment]
    session_lifetime_in_minutes: Minutes = None  # type: ignore[assignment]
    idle_session_lifetime_in_minutes: Minutes = None  # type: ignore[assignment]
    ephemeral_session_lifetime_in_minutes: Minutes = None  # type: ignore[assignment]
    idle_ephemeral_session_lifetime_in_minutes: Minutes = None  # type: ignore[assignment]
    sandbox_version: Annotated[str, StringConstraints(max_length=8)] = None  # type: ignore[assignment]
    legacy_sandbox_version: Annotated[str, StringConstraints(max_length=8)] = None  # type: ignore[assignment]
    flags: Annotated[dict[FlagName, StrictBool], Field(max_length=200)] = None  # type: ignore[assignment]
    session_cookie: SessionCookie | None = None
    sessions: Sessions | None = None
    oidc_logout: OidcLogout = None  # type: ignore[assignment]
    change_password: PageCustomization | None = None
    guardian_mfa_page: PageCustomization | None = None
    error_page: ErrorPage | None = None
    device_flow: DeviceFlow | None = None
    default_token_quota: dict[str, Any] | None = None
    mtls: dict[str, Any] | None = None
    acr_values_supported: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=255)]], Field(max_length=100)] | None = None
    customize_mfa_in_postlogin_action: StrictBool | None = None
    allow_organization_name_in_authentication_api: StrictBool | None = None
    pushed_authorization_requests_supported: StrictBool | None = None
    authorization_response_iss_parameter_supported: StrictBool | None = None
    skip_non_verifiable_callback_uri_confirmation_prompt: StrictBool | None = None
    client_id_metadata_document_supported: StrictBool = None  # type: ignore[assignment]
    enable_ai_guide: StrictBool = None  # type: ignore[assignment]
    phone_consolidated_experience: StrictBool = None  # type: ignore[assignment]
    resource_parameter_profile: Annotated[str, StringConstraints(max_length=64)] | None = None
    dynamic_client_registration_security_mode: Annotated[str, StringConstraints(max_length=64)] | None = None


_JSON_TYPES = ((type(None), "null"), (bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"), (dict, "object"))
_EXPECTED = {
    "string_type": "string", "bool_type": "boolean", "int_type": "integer", "float_type": "number",
    "list_type": "array", "dict_type": "object", "model_type": "object", "model_attributes_type": "object",
}


def _json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "unknown")


def _payload_error(message: str, where: list[str] | None = None) -> ManagementError:
    suffix = f" on property {'.'.join(where)}" if where else ""
    return ManagementError(400, f"Payload validation error: '{message}'{suffix}.", "invalid_body")


def _auth0_error(error: ValidationError) -> ManagementError:
    """The first problem, worded as Auth0 words it."""
    first = error.errors(include_url=False)[0]
    location = [str(p) for p in first["loc"]]
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        return _payload_error(f"Additional properties not allowed: {location[-1]}", location[:-1] or None)
    if kind in _EXPECTED:
        return _payload_error(f"Expected type {_EXPECTED[kind]} but found type {_json_type(value)}", location)
    if kind == "literal_error":
        return _payload_error(f'No enum match for: {json.dumps(value)[:100]}', location)
    if kind == "missing":
        return _payload_error(f"Missing required property: {location[-1]}", location[:-1] or None)
    if location and location[-1] == "[key]":
        return _payload_error(f"Invalid property name: {str(value)[:100]}", location[:-2])
    context = first.get("ctx") or {}
    if kind in ("too_short", "too_long"):
        bound = "minimum" if kind == "too_short" else "maximum"
        length = len(value) if isinstance(value, (list, dict)) else "?"
        noun = "Object has too many properties" if isinstance(value, dict) else f"Array is too {'short' if kind == 'too_short' else 'long'}"
        limit = context.get("min_length" if kind == "too_short" else "max_length")
        return _payload_error(f"{noun} ({length}), {bound} {limit}", location)
    if kind == "string_too_long":
        return _payload_error(f"String is too long ({len(value)} chars), maximum {context.get('max_length')}", location)
    if kind == "string_too_short":
        return _payload_error(f"String is too short ({len(value)} chars), minimum {context.get('min_length')}", location)
    if kind == "string_pattern_mismatch":
        return _payload_error(f"String does not match pattern {context.get('pattern')}: {str(value)[:100]}", location)
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = "less than minimum" if kind == "greater_than_equal" else "greater than maximum"
        limit = context.get("ge" if kind == "greater_than_equal" else "le")
        return _payload_error(f"Value {value} is {bound} {limit}", location)
    message = first["msg"].removeprefix("Value error, ")
    return _payload_error(message, location)


def _changes(body: Any) -> dict[str, Any]:
    """The checked changes of a PATCH body, with each lifetime's hours and minutes in step."""
    if not isinstance(body, dict):
        raise _payload_error(f"Expected type object but found type {_json_type(body)}")
    unknown = [key for key in body if key not in TenantSettingsUpdate.model_fields]
    if unknown:
        raise _payload_error(f"Additional properties not allowed: {', '.join(str(k)[:100] for k in unknown[:10])}")
    if not body:
        raise _payload_error("Too few properties defined (0), minimum 1")
    try:
        checked = TenantSettingsUpdate.model_validate(body)
    except ValidationError as error:
        raise _auth0_error(error) from None
    changes = checked.model_dump(exclude_unset=True)
    for hours_key, minutes_key in LIFETIMES.items():
        hours, minutes = changes.get(hours_key), changes.get(minutes_key)
        if minutes is not None:  # the minutes decide; hours sent with them are kept when they agree
            if hours is None or round(hours * 60) != minutes:
                changes[hours_key] = hours_value(minutes * 60)
            else:
                changes[hours_key] = body[hours_key]  # as written: 168, not 168.0
        elif hours is not None:
            changes[hours_key] = body[hours_key]
            changes[minutes_key] = max(1, round(hours * 60))
    return changes


def _inline(schema: dict) -> dict:
    """A JSON schema with its `$defs` written in place (for openapi_extra, which has no components)."""
    definitions = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(dict(definitions[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_BODY_SCHEMA = _inline(TenantSettingsUpdate.model_json_schema())
_BODY_SCHEMA["minProperties"] = 1


# -- routes --------------------------------------------------------------------------------


def _select(body: dict[str, Any], fields: str | None, include_fields: bool) -> dict[str, Any]:
    """Auth0's `fields` (comma-separated top-level names) and `include_fields` (keep them, or drop them)."""
    names = {f.strip() for f in (fields or "").split(",") if f.strip()}
    if not names:
        return body
    return {k: v for k, v in body.items() if (k in names) == include_fields}


@router.get("/tenants/settings")
async def get_tenant_settings(
    request: Request,
    fields: str | None = Query(None, max_length=4000),
    include_fields: bool = Query(True),
    caller: Caller = Depends(require("read:tenant_settings")),
):
    services = services_of(request)
    async with services.database.reader() as session:
        stored = await settings_store.get_tenant_settings(session)
    return _select(settings_json(stored, services.settings), fields, include_fields)


@router.patch(
    "/tenants/settings",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}},
)
async def patch_tenant_settings(request: Request, caller: Caller = Depends(require("update:tenant_settings"))):
    services = services_of(request)
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise _payload_error("Invalid JSON") from None
    changes = _changes(body)
    async with services.database.transaction() as session:
        stored = await settings_store.patch_tenant_settings(session, changes=changes)
        await audit(session, caller, "Update tenant settings", request, fields=sorted(changes))
    services.tenant.invalidate()
    return settings_json(stored, services.settings)
