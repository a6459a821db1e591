"""What a rules run gave: the engine's answer, the tokens' contents, the SAML assertion's
attributes and the recorded effects, with assertion helpers whose failures say what
happened (status, denial, each rule's error, traceback and output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.rules.outcome import RuleOutcome
from bastion.testing.recorder import RecordedEffects, RecordedRequest

__all__ = ["RuleRecord", "SamlAssertion", "RuleResult", "ANY"]


class _Any:
    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()  # assert_claim(name, ANY): the claim is present, whatever its value

_TOKENS = {"id": "id_token_claims", "access": "access_token_claims"}


@dataclass(frozen=True)
class RuleRecord:
    """One rule's part of the run, as the execution record shows it."""

    name: str
    outcome: str  # ok | unauthorized | error
    duration_ms: float = 0.0
    logs: list[str] = field(default_factory=list)  # print() and logging output
    message: str | None = None  # the UnauthorizedError's message
    error: str | None = None  # "ValueError: ..."
    traceback: str | None = None

    @classmethod
    def from_worker(cls, record: dict[str, Any]) -> RuleRecord:
        return cls(
            name=str(record.get("name")), outcome=str(record.get("outcome")), duration_ms=float(record.get("duration_ms") or 0),
            logs=list(record.get("logs") or []), message=record.get("message"), error=record.get("error"),
            traceback=record.get("traceback"),
        )


@dataclass(frozen=True)
class SamlAssertion:
    """What the SAML response of this login would carry (saml/attributes.py)."""

    attributes: dict[str, list[Any]]  # SAML attribute name -> values
    name_id: str
    name_id_format: str | None
    configuration: dict[str, Any]  # the configuration the response is built with (after the rules)
    warnings: list[str] = field(default_factory=list)  # rules' changes to saml_configuration that were ignored

    def attribute(self, name: str) -> list[Any] | None:
        return self.attributes.get(name)


@dataclass
class RuleResult:
    """A run of rules, as the engine answered it.

    `status`: ok | denied (UnauthorizedError) | error (an exception, a crash, the CPU or
    memory limit) | timeout. `message`: the denial's message, or the error's summary.
    `user`/`context`: as the rules left them. `outcome`: production's `outcome_from` (when ok).
    """

    status: str
    message: str | None
    user: dict[str, Any]
    context: dict[str, Any]
    records: list[RuleRecord]
    effects: RecordedEffects
    outcome: RuleOutcome | None = None
    saml: SamlAssertion | None = None

    # -- what the login would issue ---------------------------------------

    @property
    def id_token_claims(self) -> dict[str, Any]:
        """The custom claims the ID token gets from the rules (reserved names dropped)."""
        return dict(self.outcome.id_token_claims) if self.outcome else {}

    @property
    def access_token_claims(self) -> dict[str, Any]:
        return dict(self.outcome.access_token_claims) if self.outcome else {}

    @property
    def scopes(self) -> list[str] | None:
        """The access token's scopes as the rules set them; None when no rule set them."""
        return self.outcome.scopes if self.outcome else None

    @property
    def jti(self) -> str | None:
        return self.outcome.jti if self.outcome else None

    @property
    def profile(self) -> dict[str, Any]:
        """The ID token's profile claims, from the final user."""
        return dict(self.outcome.profile) if self.outcome else {}

    @property
    def redirect(self) -> dict[str, Any] | None:
        return self.outcome.redirect if self.outcome else None

    @property
    def multifactor(self) -> dict[str, Any] | None:
        return self.outcome.multifactor if self.outcome else None

    @property
    def warnings(self) -> list[str]:
        """Ignored reserved claims and the like, as the execution record lists them."""
        return list(self.outcome.warnings) if self.outcome else []

    # -- the run ----------------------------------------------------------

    @property
    def failed_rule(self) -> RuleRecord | None:
        last = self.records[-1] if self.records else None
        return last if last is not None and last.outcome != "ok" else None

    @property
    def error(self) -> str | None:
        """The failing rule's exception, "Type: message"."""
        rule = self.failed_rule
        return rule.error if rule else (self.message if self.status in ("error", "timeout") else None)

    @property
    def traceback(self) -> str | None:
        rule = self.failed_rule
        return rule.traceback if rule else None

    @property
    def logs(self) -> dict[str, list[str]]:
        """Each rule's captured output (print and logging), by rule name."""
        return {record.name: list(record.logs) for record in self.records}

    def rule(self, name: str) -> RuleRecord:
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(f"no rule named {name!r} ran; the rules that ran: {[r.name for r in self.records]}")

    @property
    def stored_app_metadata(self) -> dict[str, Any]:
        """The user's app_metadata as stored after this login (the rules' updates merged)."""
        return self.effects.app_metadata

    @property
    def stored_user_metadata(self) -> dict[str, Any]:
        return self.effects.user_metadata

    def describe(self) -> str:
        """A readable account of the run: status, message, and each rule's outcome and output."""
        lines = [f"status: {self.status}" + (f" ({self.message})" if self.message else "")]
        for record in self.records:
            lines.append(f"  rule {record.name!r}: {record.outcome}" + (f" - {record.message}" if record.message else ""))
            if record.traceback:
                lines += ["    " + line for line in record.traceback.splitlines()]
            elif record.error:
                lines.append(f"    {record.error}")
            for line in record.logs:
                lines.append(f"    | {line}")
        return "\n".join(lines)

    # -- assertions -------------------------------------------------------

    def _fail(self, expectation: str) -> None:
        raise AssertionError(f"{expectation}\n{self.describe()}")

    def assert_allowed(self) -> RuleResult:
        """The rules let the login through."""
        if self.status != "ok":
            self._fail("expected the login to be allowed, but it was not")
        return self

    def assert_denied(self, message: str | None = None) -> RuleResult:
        """A rule raised UnauthorizedError (with exactly `message`, when given)."""
        if self.status != "denied":
            self._fail(f"expected the login to be denied{f' with {message!r}' if message else ''}, but it was not")
        if message is not None and self.message != message:
            self._fail(f"expected the denial message {message!r}, got {self.message!r}")
        return self

    def assert_error(self, contains: str | None = None) -> RuleResult:
        """A rule failed (an exception, a crash, a limit): the login fails closed. `contains` is
        looked for in the error ("ValueError: ..." or the crash's description)."""
        if self.status != "error":
            self._fail("expected a rule error, but there was none")
        if contains is not None and contains not in (self.error or "") and contains not in (self.message or ""):
            self._fail(f"expected the error to mention {contains!r}, got {self.error or self.message!r}")
        return self

    def assert_timeout(self) -> RuleResult:
        if self.status != "timeout":
            self._fail("expected the rules to time out, but they did not")
        return self

    def assert_claim(self, name: str, value: Any = ANY, *, token: str = "both") -> RuleResult:
        """The ID token (`token="id"`), the access token (`"access"`) or both carry the claim
        `name` (with `value`, when given; `ANY` for any value)."""
        self.assert_allowed()
        for which in _token_names(token):
            claims = getattr(self, _TOKENS[which])
            if name not in claims:
                self._fail(f"the {which} token has no claim {name!r}; its claims from the rules: {claims}" + self._warnings_note())
            if not (value == claims[name]):
                self._fail(f"the {which} token's claim {name!r} is {claims[name]!r}, expected {value!r}")
        return self

    def assert_no_claim(self, name: str, *, token: str = "both") -> RuleResult:
        self.assert_allowed()
        for which in _token_names(token):
            claims = getattr(self, _TOKENS[which])
            if name in claims:
                self._fail(f"the {which} token carries the claim {name!r} = {claims[name]!r}, expected none")
        return self

    def assert_scopes(self, scopes: list[str] | str | None) -> RuleResult:
        """The access token's scopes as set by the rules (None: no rule changed them)."""
        self.assert_allowed()
        expected = scopes.split() if isinstance(scopes, str) else scopes
        if self.scopes != expected:
            self._fail(f"the rules set the scopes {self.scopes!r}, expected {expected!r}")
        return self

    def assert_saml_attribute(self, name: str, values: Any = ANY) -> RuleResult:
        """The SAML assertion carries attribute `name` (with exactly `values`, a list, when given)."""
        self.assert_allowed()
        if self.saml is None:
            self._fail("this run was not a SAML login (make_context('samlp'))")
        assert self.saml is not None
        found = self.saml.attributes.get(name)
        if found is None:
            self._fail(f"the SAML assertion has no attribute {name!r}; it has {sorted(self.saml.attributes)}")
        if not (values == found):
            self._fail(f"the SAML attribute {name!r} is {found!r}, expected {values!r}")
        return self

    def assert_queued(self, method: str, url: str, *, json: Any = ANY, count: int | None = None) -> list[RecordedRequest]:
        """`api.http.queue` was called for `method` `url` (matched without query), `count` times
        when given, with a JSON body equal to `json` when given. Returns the matching requests."""
        found = self.effects.queued(method, url)
        if not found:
            queued = [str(r) for r in self.effects.queued_requests] or "none"
            self._fail(f"expected a queued request {method.upper()} {url}; queued: {queued}")
        if count is not None and len(found) != count:
            self._fail(f"expected {count} queued request(s) {method.upper()} {url}, got {len(found)}")
        if not any(json == request.json for request in found):
            self._fail(f"no queued {method.upper()} {url} has the JSON body {json!r}; bodies: {[r.json for r in found]}")
        return found

    def assert_nothing_queued(self) -> RuleResult:
        if self.effects.queued_requests or self.effects.emails:
            self._fail(f"expected nothing queued; queued: {[str(r) for r in self.effects.queued_requests]}, "
                       f"emails: {[e.subject or e.template for e in self.effects.emails]}")
        return self

    def _warnings_note(self) -> str:
        return f" (warnings: {self.warnings})" if self.warnings else ""


def _token_names(token: str) -> tuple[str, ...]:
    if token == "both":
        return ("id", "access")
    if token not in _TOKENS:
        raise ValueError("token must be 'id', 'access' or 'both'")
    return (token,)
