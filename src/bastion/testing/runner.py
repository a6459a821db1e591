"""Running rules in a test through the production engine's path.

    rule_runner.run("rules/add_plan.py", user=make_user(...), configuration={...})

does what `RulesEngine.run` does for a login (rules/engine.py), step for step: the same job
(`rules` with their `id`, `name`, `key` = engine.script_key, `script`; `user`; `context`;
`configuration`) to the same sandboxed worker pool, the worker's answer read the same way
(the last rule's record decides: `unauthorized` -> denied, `error` -> error; a deadline ->
timeout; a crash -> error), the tokens from production's `outcome_from`, and the same
redaction of configuration secrets in records and messages. Only the effects differ: they
are recorded (recorder.py) instead of performed. For SAML logins the assertion's attributes
and NameID come from saml/configuration.rule_overrides and saml/attributes.py, as the SAML
responder builds them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.rules.engine import build_job, read_answer
from bastion.rules.outcome import outcome_from
from bastion.rules.pool import RuleTimeout, RuleWorkerCrash
from bastion.rules.redaction import Redaction, secret_values
from bastion.saml.attributes import assertion_attributes, name_identifier
from bastion.saml.configuration import rule_overrides
from bastion.settings import Settings
from bastion.testing.factories import DEFAULT_ISSUER, make_context, make_user
from bastion.testing.loader import RuleSource, RulesFolderError, rule_from_file, rule_from_script, rules_from_folder
from bastion.testing.pool import SessionRulePool
from bastion.testing.recorder import EffectRecorder, HttpStubs, UnexpectedHttpCall
from bastion.testing.result import RuleRecord, RuleResult, SamlAssertion

__all__ = ["RuleRunner", "Rules"]

# What `run` accepts: a rule file, a rules folder, a script (any text with a line break),
# a RuleSource, or a list of those (run in the order given).
Rules = str | Path | RuleSource | Sequence["str | Path | RuleSource"]

_KIT_SECRET_KEY = "bastion-testing-kit-key-not-a-secret-0000"


class RuleRunner:
    """Runs rules on the session's worker pool, answering their `api` calls from the test.

    `http`: the HTTP stubs (`rule_runner.http.stub("GET", url, json=...)`), kept for the
    whole test. `configuration`: values every run of the test gets (a run's own
    `configuration=` is merged over them). `allowed_hosts`: BASTION_RULES_HTTP_ALLOWED_HOSTS
    for this test's runs. Relative paths are looked up from `base_dir` (the test module's
    folder, with the fixture), then from the current folder.
    """

    def __init__(self, pool: SessionRulePool, *, base_dir: str | Path | None = None, issuer: str = DEFAULT_ISSUER):
        self.pool = pool
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.issuer = issuer
        self.http = HttpStubs()
        self.configuration: dict[str, str] = {}
        self.allowed_hosts: list[str] = []

    @property
    def sandbox(self) -> dict[str, Any]:
        """What the worker processes enforce (rules/sandbox.py's report)."""
        return self.pool.sandbox

    # -- which rules ------------------------------------------------------

    def _path(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        candidates = ([self.base_dir / path] if self.base_dir else []) + [Path.cwd() / path]
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise RulesFolderError(f"no rule file or folder {value!r} (looked in {', '.join(str(c.parent) for c in candidates)})")

    def load(self, rules: Rules | None = None, *, script: str | None = None) -> list[RuleSource]:
        """The rules a run would send, in order (a folder gives its deploy pipeline)."""
        if (rules is None) == (script is None):
            raise TypeError("give the rules (a file, a folder, a script, or a list of them) or script=, one of the two")
        if script is not None:
            return [rule_from_script(script)]
        items = [rules] if isinstance(rules, (str, Path, RuleSource)) else list(rules)  # type: ignore[arg-type]
        sources: list[RuleSource] = []
        for position, item in enumerate(items):
            if isinstance(item, RuleSource):
                sources.append(item)
            elif isinstance(item, str) and "\n" in item:
                sources.append(rule_from_script(item, name="rule" if len(items) == 1 else f"rule {position + 1}"))
            else:
                path = self._path(item)
                sources.extend(rules_from_folder(path) if path.is_dir() else [rule_from_file(path)])
        return sources

    # -- running ----------------------------------------------------------

    def _prepare(
        self, rules: Rules | None, script: str | None, user: Mapping[str, Any] | None, context: Mapping[str, Any] | None,
        protocol: str | None, configuration: Mapping[str, str] | None, check_scripts: bool,
    ) -> tuple[dict[str, Any], EffectRecorder, Redaction]:
        sources = self.load(rules, script=script)
        if check_scripts:
            for source in sources:
                source.check()
        user = copy.deepcopy(dict(user)) if user is not None else make_user()
        if context is None:
            context = make_context(protocol or "oidc-basic-profile", user=user, issuer=self.issuer)
        elif protocol is not None and context.get("protocol") != protocol:
            raise ValueError(f"protocol={protocol!r} but the context given is for {context.get('protocol')!r}: give one of the two")
        values = {**self.configuration, **dict(configuration or {})}
        settings = Settings.model_construct(
            issuer=self.issuer, secret_key=_KIT_SECRET_KEY, rules_http_allow_private=True,
            rules_http_allowed_hosts=list(self.allowed_hosts),
        )
        records = [source.record(position) for position, source in enumerate(sources, start=1)]
        job = build_job(records, user=user, context=copy.deepcopy(dict(context)), configuration=values)  # as RulesEngine.run
        recorder = EffectRecorder(settings=settings, stubs=self.http, user=user)
        return job, recorder, Redaction.of(secret_values(values))

    def run(
        self,
        rules: Rules | None = None,
        *,
        script: str | None = None,
        user: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        configuration: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check_scripts: bool = True,
    ) -> RuleResult:
        """Run `rules` (a file, a folder's pipeline, a script, or a list) or `script=` on `user`
        (default `make_user()`) and `context` (default `make_context(protocol, user=user)`).

        Raises RuleScriptRefused when Bastion would refuse to save a script
        (`check_scripts=False` sends it to the sandbox anyway), and UnexpectedHttpCall when
        the rules called a URL no stub answers. `timeout` is the pipeline's deadline in
        seconds (default BASTION_RULES_TIMEOUT's, 20).
        """
        job, recorder, redaction = self._prepare(rules, script, user, context, protocol, configuration, check_scripts)
        try:
            answer: dict[str, Any] | BaseException = self.pool.run(job, recorder, timeout=timeout)
        except (RuleTimeout, RuleWorkerCrash) as failure:
            answer = failure
        return self._result(job, recorder, redaction, answer)

    async def run_async(
        self,
        rules: Rules | None = None,
        *,
        script: str | None = None,
        user: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        configuration: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check_scripts: bool = True,
    ) -> RuleResult:
        """`run`, for async tests: awaits instead of blocking the test's event loop."""
        job, recorder, redaction = self._prepare(rules, script, user, context, protocol, configuration, check_scripts)
        try:
            answer: dict[str, Any] | BaseException = await self.pool.run_async(job, recorder, timeout=timeout)
        except (RuleTimeout, RuleWorkerCrash) as failure:
            answer = failure
        return self._result(job, recorder, redaction, answer)

    # -- reading the answer -----------------------------------------------

    def _result(
        self, job: dict[str, Any], recorder: EffectRecorder, redaction: Redaction, answer: dict[str, Any] | BaseException,
    ) -> RuleResult:
        report = recorder.unexpected_call_report()
        if report:
            raise UnexpectedHttpCall(report)
        user, context = job["user"], job["context"]
        records: list[dict[str, Any]] = []
        outcome = None
        if isinstance(answer, RuleTimeout):
            status, message = "timeout", str(answer)
        elif isinstance(answer, RuleWorkerCrash):
            status, message = "error", str(answer)
        else:  # as RulesEngine.run reads the worker's answer
            user, context, records = answer["user"], answer["context"], answer["records"]
            status, message = read_answer(records)
            if status == "ok":
                outcome = outcome_from(user, context)
        scripts = {r["name"]: r["script"] for r in job["rules"]}
        records = redaction.apply([_with_source_lines(record, scripts) for record in records])
        if message:
            message = redaction.apply(message)
        saml = _saml_assertion(job["context"], user, context) if status == "ok" else None
        return RuleResult(
            status=status, message=message, user=user, context=context,
            records=[RuleRecord.from_worker(r) for r in records], effects=recorder.effects, outcome=outcome, saml=saml,
        )


_FRAME = re.compile(r"^  <rule (?P<name>.+)>, line (?P<line>\d+), in ")


def _with_source_lines(record: dict[str, Any], scripts: dict[str, str]) -> dict[str, Any]:
    """The worker cannot read a rule's source (no files in the sandbox), so its tracebacks name
    lines without showing them; the kit has the scripts and shows each frame's line."""
    traceback = record.get("traceback")
    if not isinstance(traceback, str):
        return record
    lines = traceback.split("\n")
    for index, line in enumerate(lines[:-1]):
        frame = _FRAME.match(line)
        script = scripts.get(frame["name"]) if frame else None
        if frame and script is not None and not lines[index + 1].strip():
            source = script.splitlines()
            number = int(frame["line"])
            if 0 < number <= len(source):
                lines[index + 1] = "    " + source[number - 1].strip()
    return {**record, "traceback": "\n".join(lines)}


def _saml_assertion(start_context: dict[str, Any], user: dict[str, Any], context: dict[str, Any]) -> SamlAssertion | None:
    """The SAML response's attributes and NameID, as saml/routes.SamlResponder builds them."""
    saml_login = start_context.get("protocol") == "samlp" or start_context.get("original_protocol") == "samlp"
    start = start_context.get("saml_configuration")
    if not saml_login or not isinstance(start, dict):
        return None
    configuration, warnings = rule_overrides(start, context.get("saml_configuration", start))
    attributes = assertion_attributes(user, configuration)
    return SamlAssertion(
        attributes=dict(attributes), name_id=name_identifier(user, attributes, configuration),
        name_id_format=configuration.get("name_identifier_format"), configuration=configuration, warnings=warnings,
    )
