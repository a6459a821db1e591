"""/api/v2/email-templates: Auth0's email templates (docs/email.md "Templates").

    POST   /email-templates                  create:email_templates   409 when it exists
    GET    /email-templates/{templateName}   read:email_templates     404 until one was set
    PUT    /email-templates/{templateName}   update:email_templates   create or replace
    PATCH  /email-templates/{templateName}   update:email_templates   change the given fields

A stored template's `body` is HTML in Auth0's syntax ("liquid"): its `{{ user.email }}`,
`{{ url }}`, `{{ application.name }}` and `{% if %}` render the same in Bastion's sandboxed
Jinja2. `from` replaces BASTION_SMTP_FROM, `resultUrl` is where a verification or reset link
sends the browser afterwards, `urlLifetimeInSeconds` how long the link works, and
`enabled: false` stops the emails Bastion sends by itself; a request that asks for a disabled
`verify_email` (the verification job, `verify_email: true` on /users) is refused with 400, as
Auth0 sends nothing then; a rule's `api.email.send(template=...)` still sends (docs/email.md).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from bastion.emails.templates import EmailTemplateError
from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.storage import email_templates as store
from bastion.storage.records import EmailTemplate

router = APIRouter()

# Auth0's template names; Bastion sends verify_email, reset_email, welcome_email and enrollment_email.
TemplateName = Literal[
    "verify_email", "verify_email_by_code", "reset_email", "reset_email_by_code", "welcome_email", "blocked_account",
    "stolen_credentials", "enrollment_email", "mfa_oob_code", "user_invitation", "change_password", "password_reset",
    "async_approval",
]
_COLUMNS = {"body": "body", "from": "sender", "subject": "subject", "syntax": "syntax", "resultUrl": "result_url",
            "urlLifetimeInSeconds": "url_lifetime_in_seconds", "includeEmailInRedirect": "include_email_in_redirect",
            "enabled": "enabled"}


class TemplateFields(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    body: str | None = Field(None, max_length=100_000)
    sender: str | None = Field(None, alias="from", max_length=500)
    subject: str | None = Field(None, max_length=1000)
    syntax: Literal["liquid"] | None = None
    resultUrl: str | None = Field(None, max_length=2048)
    urlLifetimeInSeconds: int | None = Field(None, ge=0, le=30 * 86400)
    includeEmailInRedirect: bool | None = None
    enabled: bool | None = None


class TemplateCreate(TemplateFields):
    template: TemplateName
    body: str = Field(max_length=100_000)


class TemplatePut(TemplateFields):
    template: TemplateName | None = None
    body: str = Field(max_length=100_000)


def template_json(template: EmailTemplate) -> dict[str, Any]:
    return {
        "template": template.template, "body": template.body, "from": template.sender, "subject": template.subject,
        "syntax": template.syntax, "resultUrl": template.result_url, "urlLifetimeInSeconds": template.url_lifetime_in_seconds,
        "includeEmailInRedirect": template.include_email_in_redirect, "enabled": template.enabled,
    }


def _columns(body: TemplateFields, *, unset_too: bool) -> dict[str, Any]:
    given = body.model_dump(by_alias=True, exclude={"template"}, exclude_unset=not unset_too)
    values = {_COLUMNS[k]: v for k, v in given.items() if k in _COLUMNS}
    if unset_too:  # POST and PUT: what is left out takes its default
        values["enabled"] = True if values.get("enabled") is None else values["enabled"]
        values["syntax"] = values.get("syntax") or "liquid"
        values["include_email_in_redirect"] = bool(values.get("include_email_in_redirect"))
    if values.get("result_url") and not str(values["result_url"]).startswith(("https://", "http://")):
        raise ManagementError(400, "Payload validation error: 'resultUrl must be an absolute http(s) URL'.", "invalid_body")
    return values


def _checked_syntax(services, values: dict[str, Any]) -> dict[str, Any]:
    try:
        services.email_templates.check_string(values.get("subject"), values.get("body"))
    except EmailTemplateError as error:
        raise ManagementError(400, f"Payload validation error: 'The template is invalid: {error}'.", "invalid_body") from None
    return values


def _checked_name(name: str) -> str:
    if name not in TemplateName.__args__:
        raise ManagementError(400, f"Path validation error: 'No enum match for: {name}' on property templateName.",
                              "invalid_uri")
    return name


@router.post("/email-templates", status_code=201)
async def create_template(request: Request, body: TemplateCreate, caller: Caller = Depends(require("create:email_templates"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        if await store.get_email_template(session, template=body.template) is not None:
            raise ManagementError(409, f"Template {body.template} already exists.", "template_conflict")
        try:
            template = await store.put_email_template(session, template=body.template,
                                                      values=_checked_syntax(services, _columns(body, unset_too=True)))
        except IntegrityError:
            raise ManagementError(409, f"Template {body.template} already exists.", "template_conflict") from None
        await audit(session, caller, "Create an email template", request, template=body.template)
    services.tenant.invalidate()
    return template_json(template)


@router.get("/email-templates/{template_name}")
async def get_template(request: Request, template_name: str, caller: Caller = Depends(require("read:email_templates"))):
    services = services_of(request)
    async with services.database.reader() as session:
        template = await store.get_email_template(session, template=_checked_name(template_name))
    if template is None:
        raise ManagementError(404, "The template does not exist.", "inexistent_email_template")
    return template_json(template)


@router.put("/email-templates/{template_name}")
async def put_template(request: Request, template_name: str, body: TemplatePut,
                       caller: Caller = Depends(require("update:email_templates"))):
    return await _save(request, caller, template_name, _columns(body, unset_too=True), "Set an email template")


@router.patch("/email-templates/{template_name}")
async def patch_template(request: Request, template_name: str, body: TemplateFields,
                         caller: Caller = Depends(require("update:email_templates"))):
    return await _save(request, caller, template_name, _columns(body, unset_too=False), "Update an email template",
                       must_exist=True)


async def _save(request: Request, caller: Caller, template_name: str, values: dict[str, Any], description: str, *,
                must_exist: bool = False) -> dict[str, Any]:
    services = services_of(request)
    name = _checked_name(template_name)
    _checked_syntax(services, values)
    async with services.database.transaction() as session:
        if must_exist and await store.get_email_template(session, template=name) is None:
            raise ManagementError(404, "The template does not exist.", "inexistent_email_template")
        template = await store.put_email_template(session, template=name, values=values)
        await audit(session, caller, description, request, template=name)
    services.tenant.invalidate()
    return template_json(template)
