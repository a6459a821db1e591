"""bastion.testing: test Bastion rules with pytest, through the production engine.

    def test_adds_the_plan_claim(rule_runner, make_user):
        result = rule_runner.run(
            "../customize_tokens.py",
            user=make_user(app_metadata={"plan": "gold"}),
            configuration={"CLAIMS_NAMESPACE": "https://example.com/"},
        )
        result.assert_claim("https://example.com/plan", "gold")

The rules run in the sandboxed worker processes `bastion serve` uses, with the job the
engine sends and the outcome it reads; `api` calls are recorded and HTTP is answered by
stubs. docs/testing-rules.md is the guide. The pytest plugin (fixtures `rule_runner`,
`make_user`, `make_context`) is `bastion.testing.plugin`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.testing.factories import PROTOCOLS, make_context, make_user
    from bastion.testing.loader import RuleScriptRefused, RuleSource, RulesFolderError, rules_from_folder
    from bastion.testing.pool import SessionRulePool
    from bastion.testing.recorder import (
        HttpStub,
        HttpStubs,
        MetadataUpdate,
        RecordedEffects,
        RecordedEmail,
        RecordedRequest,
        RedirectToken,
        UnexpectedHttpCall,
    )
    from bastion.testing.result import ANY, RuleRecord, RuleResult, SamlAssertion
    from bastion.testing.runner import RuleRunner

# Imported on first use, so that `bastion rules test` and pytest's plugin loading stay light.
_EXPORTS = {
    "PROTOCOLS": "factories", "make_context": "factories", "make_user": "factories",
    "RuleScriptRefused": "loader", "RuleSource": "loader", "RulesFolderError": "loader", "rules_from_folder": "loader",
    "SessionRulePool": "pool",
    "HttpStub": "recorder", "HttpStubs": "recorder", "MetadataUpdate": "recorder", "RecordedEffects": "recorder",
    "RecordedEmail": "recorder", "RecordedRequest": "recorder", "RedirectToken": "recorder", "UnexpectedHttpCall": "recorder",
    "ANY": "result", "RuleRecord": "result", "RuleResult": "result", "SamlAssertion": "result",
    "RuleRunner": "runner",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bastion.testing.{module}"), name)


__all__ = [
    "ANY",
    "PROTOCOLS",
    "HttpStub",
    "HttpStubs",
    "MetadataUpdate",
    "RecordedEffects",
    "RecordedEmail",
    "RecordedRequest",
    "RedirectToken",
    "RuleRecord",
    "RuleResult",
    "RuleRunner",
    "RuleScriptRefused",
    "RuleSource",
    "RulesFolderError",
    "SamlAssertion",
    "SessionRulePool",
    "UnexpectedHttpCall",
    "make_context",
    "make_user",
    "rules_from_folder",
]
