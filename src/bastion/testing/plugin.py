"""The pytest plugin for rule authors (entry point `bastion`, group `pytest11`).

Fixtures:

- `rule_runner`: a `RuleRunner` for this test: its own HTTP stubs and configuration, on the
  session's pool of sandboxed rule workers; relative paths are looked up from the test
  module's folder;
- `make_user`, `make_context`: the factories of `bastion.testing.factories`;
- `bastion_rule_pool`: the session's pool (production's RuleWorkerPool with the server's
  default settings), started at the first run and closed at the end of the session.

Loaded automatically once Bastion is installed; `bastion rules test` loads it explicitly.
Nothing is imported or started until a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from bastion.testing.pool import SessionRulePool
    from bastion.testing.runner import RuleRunner


@pytest.fixture(scope="session")
def bastion_rule_pool() -> Iterator[SessionRulePool]:
    """The sandboxed rule workers of this test session."""
    from bastion.testing.pool import SessionRulePool

    pool = SessionRulePool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def rule_runner(bastion_rule_pool: SessionRulePool, request: pytest.FixtureRequest) -> RuleRunner:
    """Runs rules through the production engine path; `rule_runner.http.stub(...)` answers their HTTP calls."""
    from bastion.testing.runner import RuleRunner

    return RuleRunner(bastion_rule_pool, base_dir=request.path.parent)


@pytest.fixture
def make_user() -> Callable[..., dict[str, Any]]:
    """`make_user(**fields)`: the rule's `user`, as production builds it (alice@example.com by default)."""
    from bastion.testing.factories import make_user as factory

    return factory


@pytest.fixture
def make_context() -> Callable[..., dict[str, Any]]:
    """`make_context(protocol, **fields)`: the rule's `context` for a login by that protocol."""
    from bastion.testing.factories import make_context as factory

    return factory
