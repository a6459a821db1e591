"""/api/v2/rules, /api/v2/rules-configs, and Bastion's own /rules/try, /rules/{id}/try
and /rules-executions/{id}. The checks and defaults live in bastion.rules.admin (the
CLI uses them too)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import ManagementError
from bastion.management.auth import Caller, require
from bastion.management.common import audit, services_of
from bastion.management.paging import PageParams, list_body, page_params
from bastion.rules import admin
from bastion.rules.context import RequestInfo
from bastion.storage import rules as rule_store
from bastion.web import client_ip, request_hostname

router = APIRouter()


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RuleCreate(_Body):
    name: str
    script: str
    order: int | None = None
    enabled: bool | None = None
    stage: str | None = None
    language: str | None = None


class RuleUpdate(_Body):
    name: str | None = None
    script: str | None = None
    order: int | None = None
    enabled: bool | None = None
    stage: Any = None  # refused: a rule's stage never changes (Auth0 strips it)


class RuleConfigPut(_Body):
    value: str = Field(min_length=1)


class RuleTry(_Body):
    user_id: str | None = Field(None, min_length=1)
    user: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    client_id: str | None = Field(None, min_length=1)
    rules: list[str] | None = Field(None, max_length=100)
    dry_run: bool = True


# -- rules -------------------------------------------------------------------


@router.get("/rules")
async def list_rules(
    request: Request,
    params: PageParams = Depends(page_params),
    enabled: bool | None = Query(None),
    stage: str | None = Query(None),
    fields: str | None = Query(None),
    include_fields: bool | None = Query(None),
    caller: Caller = Depends(require("read:rules")),
):
    """`fields`/`include_fields` (sent by auth0-python) are accepted; every field is always returned."""
    services = services_of(request)
    if stage is not None and stage not in admin.STAGES:
        raise ManagementError(400, f"Query validation error: 'No enum match for: \"{stage}\"' on property stage.", "invalid_query_string")
    async with services.database.reader() as session:
        page = await rule_store.list_rules(session, page=params.page, per_page=params.per_page, stage=stage, enabled=enabled)
    return list_body("rules", page, [admin.rule_json(r) for r in page.items], params)


@router.post("/rules", status_code=201)
async def post_rule(request: Request, body: RuleCreate, caller: Caller = Depends(require("create:rules"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        rule = await admin.create_rule(
            session, name=body.name, script=body.script, order=body.order, enabled=body.enabled, stage=body.stage,
            language=body.language,
        )
        await audit(session, caller, "Create a rule", request, rule_id=rule.id)
    services.tenant.invalidate()
    return admin.rule_json(rule)


@router.get("/rules/{rule_id}")
async def get_rule(request: Request, rule_id: str, caller: Caller = Depends(require("read:rules"))):
    services = services_of(request)
    async with services.database.reader() as session:
        rule = await admin.get_rule(session, rule_id)
    return admin.rule_json(rule)


@router.patch("/rules/{rule_id}")
async def patch_rule(request: Request, rule_id: str, body: RuleUpdate, caller: Caller = Depends(require("update:rules"))):
    services = services_of(request)
    if "stage" in body.model_fields_set:
        raise ManagementError(400, "Payload validation error: 'Additional properties not allowed: stage'.", "invalid_body")
    async with services.database.transaction() as session:
        rule = await admin.update_rule(session, rule_id, body.model_dump(exclude_unset=True, exclude={"stage"}))
        await audit(session, caller, "Update a rule", request, rule_id=rule_id)
    services.tenant.invalidate()
    return admin.rule_json(rule)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(request: Request, rule_id: str, caller: Caller = Depends(require("delete:rules"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await admin.delete_rule(session, rule_id)
        await audit(session, caller, "Delete a rule", request, rule_id=rule_id)
    services.tenant.invalidate()
    return Response(status_code=204)


# -- trying rules (Bastion's own) ----------------------------------------------


async def _try(request: Request, caller: Caller, body: RuleTry, *, rule_id: str | None) -> dict:
    services = services_of(request)

    async def record(session, run, execution) -> None:
        await audit(session, caller, "Try rules", request, rules_execution=execution,
                    **({"rule_id": rule_id} if rule_id else {}), dry_run=body.dry_run)

    return await admin.try_rules(
        services, rule_id=rule_id, rule_ids=None if rule_id else body.rules, user_id=body.user_id, user=body.user,
        context=body.context, client_id=body.client_id, dry_run=body.dry_run, record=record,
        request=RequestInfo(ip=client_ip(request), user_agent=request.headers.get("user-agent"), hostname=request_hostname(request) or "localhost"),
    )


@router.post("/rules/try")
async def try_pipeline(request: Request, body: RuleTry, caller: Caller = Depends(require("update:rules", "create:rules"))):
    """The enabled login rules (or the listed `rules`) on a stored or sample user; a dry run unless `dry_run` is false."""
    return await _try(request, caller, body, rule_id=None)


@router.post("/rules/{rule_id}/try")
async def try_rule(request: Request, rule_id: str, body: RuleTry, caller: Caller = Depends(require("update:rules", "create:rules"))):
    """One rule, even a disabled one."""
    return await _try(request, caller, body, rule_id=rule_id)


@router.get("/rules-executions/{execution_id}")
async def get_rule_execution(request: Request, execution_id: str, caller: Caller = Depends(require("read:logs", "read:rules"))):
    services = services_of(request)
    async with services.database.reader() as session:
        execution = await admin.load_execution(session, execution_id)
    if execution is None:
        raise ManagementError(404, "The rules execution does not exist.", "inexistent_rules_execution")
    return execution


# -- rules-configs -------------------------------------------------------------


@router.get("/rules-configs")
async def list_rule_configs(request: Request, caller: Caller = Depends(require("read:rules_configs"))):
    """Keys only: values are write-only."""
    services = services_of(request)
    async with services.database.reader() as session:
        keys = await rule_store.list_rule_config_keys(session)
    return [{"key": key} for key in keys]


@router.put("/rules-configs/{key}")
async def put_rule_config(request: Request, key: str, body: RuleConfigPut, caller: Caller = Depends(require("update:rules_configs"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await admin.set_rule_config(session, services.sealer, key=key, value=body.value)
        await audit(session, caller, "Set a rules config", request, key=key)
    services.tenant.invalidate()
    return {"key": key, "value": body.value}


@router.delete("/rules-configs/{key}", status_code=204)
async def delete_rule_config(request: Request, key: str, caller: Caller = Depends(require("delete:rules_configs"))):
    services = services_of(request)
    async with services.database.transaction() as session:
        await admin.delete_rule_config(session, key=key)
        await audit(session, caller, "Delete a rules config", request, key=key)
    services.tenant.invalidate()
    return Response(status_code=204)
