"""The rules engine: one call runs a login's enabled rules in a sandboxed worker and
returns what they decided.

    RulesEngine.run(protocol, user, context)  ->  RuleRun
        status   ok | denied (UnauthorizedError) | error | timeout
        outcome  claims, scopes, jti, profile (outcome.py), when ok
        records  per rule: duration, outcome, captured output, error and traceback
        effects  what `api` did (or, in a dry run, would have done)

The caller stores the execution record (`execution_values`) inside the login's log
event (events.record_event), so recording costs no database statement of its own.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from bastion.rules.effects import Effects
from bastion.rules.outcome import RuleOutcome, outcome_from
from bastion.rules.pool import RuleTimeout, RuleWorkerCrash, RuleWorkerPool
from bastion.rules.redaction import Redaction, secret_values
from bastion.security.handles import new_id
from bastion.services import Services
from bastion.storage.records import Rule

__all__ = ["RuleRun", "RulesEngine"]

GENERIC_DENIAL = "The login was stopped by a rule error. The administrator can find the details in the logs."


@dataclass
class RuleRun:
    status: str  # ok | denied | error | timeout
    user: dict[str, Any]
    context: dict[str, Any]
    outcome: RuleOutcome | None = None
    message: str | None = None  # the UnauthorizedError message, or the error summary
    records: list[dict[str, Any]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: float = 0.0
    dry_run: bool = False
    execution_id: str | None = None

    @property
    def ran(self) -> bool:
        return self.execution_id is not None

    def execution_values(self, *, protocol: str, client_id: str | None, user_id: str | None) -> dict[str, Any]:
        """The columns of this run's execution record."""
        return {
            "id": self.execution_id,
            "protocol": protocol,
            "client_id": client_id,
            "user_id": user_id,
            "outcome": self.status,
            "duration_ms": self.duration_ms,
            "dry_run": self.dry_run,
            "rules": self.records,
            "effects": self.effects,
            "warnings": list(self.outcome.warnings) if self.outcome else [],
            "error": self.message if self.status in ("error", "timeout") else None,
        }


@functools.lru_cache(maxsize=1024)
def _script_digest(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


def script_key(rule: Rule) -> str:
    """Names one version of a rule's script: workers compile a key once and keep it."""
    return f"{rule.id}:{_script_digest(rule.script)}"


def build_job(rules: list[Rule], *, user: dict[str, Any], context: dict[str, Any], configuration: dict[str, str]) -> dict[str, Any]:
    """The message a worker runs: every rule of the login, in order, with one user and context.
    (bastion.testing sends the same.)"""
    return {
        "rules": [{"id": r.id, "name": r.name, "key": script_key(r), "script": r.script} for r in rules],
        "user": user,
        "context": context,
        "configuration": configuration,
    }


def read_answer(records: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(status, message) from the worker's per-rule records: the last rule's outcome decides."""
    last = records[-1] if records else {}
    if last.get("outcome") == "unauthorized":
        return "denied", last.get("message") or "Access denied."
    if last.get("outcome") == "error":
        return "error", f"rule {last.get('name')!r} failed: {last.get('error')}"
    return "ok", None


class RulesEngine:
    def __init__(self, services: Services):
        self._services = services
        settings = services.settings
        self.pool = RuleWorkerPool(
            size=settings.rules_workers,
            memory_mb=settings.rules_memory_mb,
            cpu_seconds=settings.rules_cpu_seconds,
            jobs_per_worker=settings.rules_jobs_per_worker,
        )

    async def close(self) -> None:
        await self.pool.close()

    async def run(
        self,
        *,
        user: dict[str, Any],
        context: dict[str, Any],
        rules: list[Rule] | None = None,
        dry_run: bool = False,
    ) -> RuleRun:
        """Run `rules` (default: the enabled login rules) on `user` and `context`."""
        if rules is None:
            rules = await self._services.tenant.enabled_rules()
        rules = [r for r in rules if r.language == "python"]
        if not rules:
            return RuleRun(status="ok", user=user, context=context, outcome=outcome_from(user, context), dry_run=dry_run)
        run = RuleRun(status="ok", user=user, context=context, dry_run=dry_run, execution_id=new_id("exe_", 20))
        configuration = await self._services.tenant.rule_configuration()
        redaction = Redaction.of(secret_values(configuration))
        effects = Effects(
            self._services, user_id=user.get("user_id"), dry_run=dry_run, execution_id=run.execution_id,
            client_id=context.get("client_id"), redaction=redaction,
            user_metadata={"app_metadata": dict(user.get("app_metadata") or {}), "user_metadata": dict(user.get("user_metadata") or {})},
        )
        job = build_job(rules, user=user, context=context, configuration=configuration)
        started = time.perf_counter()
        try:
            result = await self.pool.run(job, effects, timeout=self._services.settings.rules_timeout)
        except RuleTimeout as error:
            run.status, run.message = "timeout", str(error)
        except RuleWorkerCrash as error:
            run.status, run.message = "error", str(error)
        else:
            run.user, run.context, run.records = result["user"], result["context"], result["records"]
            run.status, run.message = read_answer(run.records)
            if run.status == "ok":
                run.outcome = outcome_from(run.user, run.context)
        run.effects = effects.performed
        run.records, run.effects = redaction.apply(run.records), redaction.apply(run.effects)
        if run.message:
            run.message = redaction.apply(run.message)
        run.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return run
