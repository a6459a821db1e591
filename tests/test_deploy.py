"""Rules as code (docs/deploy.md): the three layouts, git sources, plan, atomic apply, orders,
configuration values, history, rollback, drift, manual rules, and a login running what was
deployed. The Python API (bastion.deploy.service) for most, the CLI for a few. Tests on the
`bastion` fixture run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.deploy import service
from bastion.deploy.bundle import load_bundle
from bastion.deploy.errors import BundleError, DeployError, FetchError
from bastion.deploy.git import fetch
from bastion.deploy.plan import JAVASCRIPT_WARNING, render_plan
from bastion.keys.jose import public_keyset, verify_jwt
from bastion.rules import admin
from bastion.storage import deployments as deployment_store
from bastion.storage import log_events
from bastion.storage import rules as rule_store

def claim_rule(claim: str, value: object) -> str:
    return f"def rule(user, context, api):\n    context.id_token[{'https://example.com/' + claim!r}] = {value!r}\n"


def write(folder: Path, files: dict[str, str | dict]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    return folder


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


async def stored_rules(bastion) -> dict[str, tuple]:
    """name -> (order, enabled, stage, language, script)."""
    async with bastion.services.database.reader() as session:
        rules = (await rule_store.list_rules(session, page=0, per_page=100)).items
    return {r.name: (r.order, r.enabled, r.stage, r.language, r.script) for r in rules}


async def deploy(bastion, folder: Path, **options):
    return await service.apply(bastion.services, load_bundle(folder), actor="test", source=str(folder), ref=None,
                               commit=None, path=None, **options)


# -- layouts -------------------------------------------------------------------------


async def test_bastions_own_layout_deploys_python_rules_with_their_metadata(bastion, tmp_path):
    folder = write(tmp_path / "bundle", {
        "rules/add_claim.py": claim_rule("a", 1),
        "rules/add_claim.json": {"order": 5},
        "rules/second.py": claim_rule("b", 2),
        "rules/quiet.py": claim_rule("c", 3),
        "rules/quiet.json": {"enabled": False, "stage": "login_success"},
        "rules/README.md": "notes",
    })
    bundle = load_bundle(folder)
    assert bundle.layout == "bastion" and [r.name for r in bundle.rules] == ["add-claim", "quiet", "second"]
    assert any("README.md" in w for w in bundle.warnings)

    deployment = await deploy(bastion, folder)

    # Missing orders come after the others, in name order.
    assert await stored_rules(bastion) == {
        "add-claim": (5, True, "login_success", "python", claim_rule("a", 1)),
        "quiet": (6, False, "login_success", "python", claim_rule("c", 3)),
        "second": (7, True, "login_success", "python", claim_rule("b", 2)),
    }
    assert deployment.content_hash == bundle.content_hash and deployment.actor == "test"
    assert sorted(r["name"] for r in deployment.snapshot["rules"]) == ["add-claim", "quiet", "second"]
    assert deployment.summary["added"] == ["add-claim", "quiet", "second"]
    async with bastion.services.database.reader() as session:
        [event] = (await log_events.list_log_events(session, page=0, per_page=10, type="sapi")).items
    assert event.description == "Deploy rules" and event.details["deployment_id"] == deployment.id


async def test_auth0_deploy_extension_layout_stores_javascript_disabled_with_a_warning(bastion, tmp_path):
    folder = write(tmp_path / "bundle", {
        "rules/enrich.js": "function (user, context, callback) { callback(null, user, context); }",
        "rules/enrich.json": {"enabled": True, "order": 2, "stage": "login_success"},
        "rules-configs/API_KEY.json": {"value": "from-the-repository"},
    })
    bundle = load_bundle(folder)
    assert bundle.layout == "auth0-deploy-extension" and bundle.config_keys == ("API_KEY",)
    planned = await service.plan(bastion.services, bundle, environment={"API_KEY": "from-the-environment"})
    text = render_plan(planned)
    assert JAVASCRIPT_WARNING in text and "rules/enrich.js" in text
    assert "ignored and never stored" in text
    assert "from-the-environment" not in text and "from-the-repository" not in text

    await service.apply(bastion.services, bundle, actor="t", source="x", ref=None, commit=None, path=None,
                        environment={"API_KEY": "from-the-environment"})
    assert (await stored_rules(bastion))["enrich"][:4] == (2, False, "login_success", "javascript")
    assert (await bastion.services.tenant.rule_configuration())["API_KEY"] == "from-the-environment"


async def test_auth0_deploy_cli_layout_reads_each_definition_and_its_script(bastion, tmp_path):
    folder = write(tmp_path / "bundle", {
        "rules/Add-Roles.json": {"name": "Add Roles", "script": "./add-roles.py", "order": 3, "enabled": True,
                                 "stage": "login_success"},
        "rules/add-roles.py": claim_rule("roles", ["admin"]),
        "rules/legacy.json": {"name": "legacy", "script": "./legacy.js", "order": None, "enabled": True},
        "rules/legacy.js": "function (user, context, callback) { callback(null, user, context); }",
        "rules-configs/NAMESPACE.json": {"key": "NAMESPACE", "value": "https://example.com/"},
    })
    bundle = load_bundle(folder)
    assert bundle.layout == "auth0-deploy-cli"
    async with bastion.services.database.transaction() as session:
        await admin.set_rule_config(session, bastion.services.sealer, key="NAMESPACE", value="https://already.example/")
    planned = await service.plan(bastion.services, bundle, environment={})
    assert planned.config_kept == ("NAMESPACE",) and not planned.errors

    await service.apply(bastion.services, bundle, actor="t", source="x", ref=None, commit=None, path=None, environment={})
    rules = await stored_rules(bastion)
    assert rules["Add Roles"][:4] == (3, True, "login_success", "python")
    assert rules["legacy"][:4] == (4, False, "login_success", "javascript")
    assert (await bastion.services.tenant.rule_configuration())["NAMESPACE"] == "https://already.example/"


# -- git ---------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path):
    """A bare repository with main (two commits, the first tagged v1) and a branch `next`."""
    bare, work = tmp_path / "remote" / "rules.git", tmp_path / "work"
    bare.mkdir(parents=True)
    git(bare, "init", "--bare", "--initial-branch=main")
    work.mkdir()
    git(work, "init", "--initial-branch=main")
    commits = {}
    for label in ("v1", "v2"):
        write(work, {"tenant/rules/tag.py": claim_rule("v", label)})
        git(work, "add", "-A")
        git(work, "commit", "-m", label)
        commits[label] = git(work, "rev-parse", "HEAD")
        if label == "v1":
            git(work, "tag", "v1")
    git(work, "push", "-q", str(bare), "main", "v1")
    git(work, "checkout", "-q", "-b", "next")
    write(work, {"tenant/rules/tag.py": claim_rule("v", "next")})
    git(work, "commit", "-qam", "next")
    commits["next"] = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(bare), "next")
    return bare, commits


async def test_a_git_source_deploys_a_branch_a_tag_or_a_commit(bastion, remote):
    bare, commits = remote
    for url, ref, expected in ((f"file://{bare}", None, "v2"), (str(bare), "v1", "v1"), (str(bare), "next", "next"),
                               (str(bare), commits["v1"], "v1")):
        async with fetch(url, ref, timeout=30) as source:
            bundle = load_bundle(source.path / "tenant")
            deployment = await service.apply(bastion.services, bundle, actor="t", source=url, ref=ref,
                                             commit=source.commit, path="tenant")
            checkout = source.path
        assert not checkout.exists()  # the temporary folder is gone
        assert deployment.commit == commits[expected]
        assert (await stored_rules(bastion))["tag"][4] == claim_rule("v", expected)


async def test_fetching_an_unknown_ref_or_repository_fails_clearly(tmp_path, remote):
    bare, _ = remote
    with pytest.raises(FetchError, match="git fetch"):
        await fetch(str(bare), "no-such-branch", timeout=30)
    with pytest.raises(FetchError, match="git fetch"):
        await fetch(str(tmp_path / "nowhere.git"), None, timeout=30)
    with pytest.raises(FetchError, match="not a git repository URL"):
        await fetch("--upload-pack=touch /tmp/x", None, timeout=30)
    source = await fetch(str(bare), "v1", timeout=30)
    with source:
        assert (source.path / "tenant" / "rules" / "tag.py").is_file()
    assert not source.path.exists()


def test_the_cli_deploys_a_git_repository_and_lists_history(tmp_path, monkeypatch, remote):
    bare, commits = remote
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    planned = runner.invoke(main_command(), ["deploy", f"file://{bare}", "--ref", "main", "--path", "tenant", "--plan"])
    assert planned.exit_code == 0, planned.output
    assert "+ add      tag" in planned.output
    assert "no deployments" in runner.invoke(main_command(), ["deploy", "history"]).output

    applied = runner.invoke(main_command(), ["deploy", str(bare), "--ref", "v1", "--path", "tenant"])
    assert applied.exit_code == 0, applied.output
    assert f"commit {commits['v1']}" in applied.output
    history = runner.invoke(main_command(), ["deploy", "history"])
    assert history.exit_code == 0 and f"ref v1 @ {commits['v1'][:12]}" in history.output and "cli:" in history.output
    status = runner.invoke(main_command(), ["deploy", "status"])
    assert status.exit_code == 0 and "no drift" in status.output


def main_command():
    from bastion.cli import main

    return main


# -- plan --------------------------------------------------------------------------


def test_the_cli_plan_shows_each_change_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    first = write(tmp_path / "one", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2},
        "rules/gamma.py": claim_rule("g", 1), "rules/gamma.json": {"order": 3},
    })
    assert runner.invoke(main_command(), ["deploy", str(first)]).exit_code == 0
    second = write(tmp_path / "two", {
        "rules/alpha.py": claim_rule("a", 2), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 4, "enabled": False},
        "rules/delta.py": claim_rule("d", 1), "rules/delta.json": {"order": 2},
    })
    planned = runner.invoke(main_command(), ["deploy", str(second), "--plan"])
    assert planned.exit_code == 0, planned.output
    output = planned.output
    assert "+ add      delta  (login_success, order 2, enabled, python)" in output
    assert "~ change   alpha  (script)" in output
    assert "--- alpha (current)" in output and "+++ alpha (new)" in output
    assert "-    context.id_token['https://example.com/a'] = 1" in output
    assert "+    context.id_token['https://example.com/a'] = 2" in output
    assert "^ reorder  beta  (2 -> 4)" in output and "~ disable  beta" in output
    assert "- remove   gamma  (login_success, order 3)" in output
    listed = runner.invoke(main_command(), ["rules", "list"]).output
    assert "gamma" in listed and "delta" not in listed  # nothing applied
    assert len([line for line in runner.invoke(main_command(), ["deploy", "history"]).output.splitlines() if line]) == 1


# -- atomicity and orders ----------------------------------------------------------


async def test_one_invalid_rule_changes_nothing_and_every_problem_is_named(bastion, tmp_path):
    await deploy(bastion, write(tmp_path / "good", {"rules/keep.py": claim_rule("k", 1)}))
    before = await stored_rules(bastion)
    folder = write(tmp_path / "bad", {
        "rules/keep.py": claim_rule("k", 2),
        "rules/new.py": claim_rule("n", 1),
        "rules/bad_import.py": "import os\n\ndef rule(user, context, api):\n    pass\n",
        "rules/x.py": claim_rule("x", 1),
        "rules/one.py": claim_rule("o", 1), "rules/one.json": {"order": 7},
        "rules/two.py": claim_rule("t", 1), "rules/two.json": {"order": 7},
        "rules/staged.py": claim_rule("s", 1), "rules/staged.json": {"stage": "post_login"},
        "rules/broken.py": claim_rule("b", 1), "rules/broken.json": "{not json",
    })
    with pytest.raises(BundleError) as raised:
        load_bundle(folder)
    problems = "\n".join(raised.value.problems)
    assert "rules/bad_import.py: line 1: import of 'os' is not allowed" in problems
    assert "rules/x.py: invalid rule name 'x'" in problems
    assert "rules/one.json, rules/two.json: two rules with order 7 in stage login_success" in problems
    assert "rules/staged.json: unknown stage 'post_login'" in problems
    assert "rules/broken.json: malformed JSON" in problems
    assert await stored_rules(bastion) == before


def test_the_cli_refuses_an_invalid_bundle_with_a_message_and_an_exit_status(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    folder = write(tmp_path / "bad", {"rules/fine.py": claim_rule("f", 1), "rules/broken.py": "def rule(user, context):\n    pass\n"})
    result = runner.invoke(main_command(), ["deploy", str(folder)])
    assert result.exit_code == 1
    assert "nothing was changed" in result.output and "rules/broken.py" in result.output and "three arguments" in result.output
    assert "Traceback" not in result.output
    assert "no rules" in runner.invoke(main_command(), ["rules", "list"]).output
    missing = runner.invoke(main_command(), ["deploy", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no such folder" in missing.output


async def test_a_write_refused_midway_rolls_the_whole_deploy_back(bastion, tmp_path, monkeypatch):
    await deploy(bastion, write(tmp_path / "one", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2},
    }))
    before = await stored_rules(bastion)

    async def refuse(*args, **kwargs):
        from bastion.errors import ManagementError

        raise ManagementError(409, "A rule with the same order already exists", "rule_conflict")

    monkeypatch.setattr(admin, "create_rule", refuse)
    second = write(tmp_path / "two", {
        "rules/alpha.py": claim_rule("a", 2), "rules/alpha.json": {"order": 2},
        "rules/gamma.py": claim_rule("g", 1), "rules/gamma.json": {"order": 1},
    })
    with pytest.raises(DeployError, match="gamma: A rule with the same order already exists"):
        await deploy(bastion, second)
    assert await stored_rules(bastion) == before  # beta's deletion and alpha's update rolled back
    assert len(await service.history(bastion.services)) == 1


async def test_rules_exchanging_their_orders_apply_without_a_conflict(bastion, tmp_path):
    await deploy(bastion, write(tmp_path / "one", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2},
        "rules/gamma.py": claim_rule("g", 1), "rules/gamma.json": {"order": 3},
    }))
    await deploy(bastion, write(tmp_path / "two", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 2},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 3},
        "rules/gamma.py": claim_rule("g", 1), "rules/gamma.json": {"order": 1},
        "rules/delta.py": claim_rule("d", 1), "rules/delta.json": {"order": 4},
    }))
    assert {name: values[0] for name, values in (await stored_rules(bastion)).items()} == {
        "alpha": 2, "beta": 3, "gamma": 1, "delta": 4}


# -- configuration values ------------------------------------------------------------


async def test_configuration_values_come_from_the_environment_or_what_is_set_never_the_repository(bastion, tmp_path):
    async with bastion.services.database.transaction() as session:
        await admin.set_rule_config(session, bastion.services.sealer, key="ALREADY", value="set-before")
        await admin.set_rule_config(session, bastion.services.sealer, key="HAND_SET", value="by-hand")
    folder = write(tmp_path / "one", {
        "rules/uses.py": claim_rule("u", 1),
        "rules-configs/FROM_ENV.json": {"value": "repository-value"},
        "rules-configs/ALREADY.json": {},
        "rules-configs/MISSING.json": {},
    })
    bundle = load_bundle(folder)
    planned = await service.plan(bastion.services, bundle, env_prefix="DEPLOY_", environment={"DEPLOY_FROM_ENV": "env-value"})
    assert planned.errors == ("rules-configs/MISSING.json: no value for MISSING: set the environment variable DEPLOY_MISSING "
                              "(values are never read from the repository)",)
    with pytest.raises(BundleError, match="MISSING"):
        await service.apply(bastion.services, bundle, actor="t", source="x", ref=None, commit=None, path=None,
                            env_prefix="DEPLOY_", environment={"DEPLOY_FROM_ENV": "env-value"})
    assert "uses" not in await stored_rules(bastion)

    environment = {"DEPLOY_FROM_ENV": "env-value", "DEPLOY_MISSING": "now-given"}
    deployment = await service.apply(bastion.services, bundle, actor="t", source="x", ref=None, commit=None, path=None,
                                     env_prefix="DEPLOY_", environment=environment)
    values = await bastion.services.tenant.rule_configuration()
    assert values == {"ALREADY": "set-before", "HAND_SET": "by-hand", "FROM_ENV": "env-value", "MISSING": "now-given"}
    assert deployment.snapshot["config_keys"] == ["ALREADY", "FROM_ENV", "MISSING"]
    assert "env-value" not in json.dumps(deployment.summary) + json.dumps(deployment.snapshot)

    # Keys the last deployment named and this bundle does not are removed; HAND_SET never was named.
    second = write(tmp_path / "two", {"rules/uses.py": claim_rule("u", 1), "rules-configs/ALREADY.json": {}})
    planned = await service.plan(bastion.services, load_bundle(second), environment={})
    assert planned.config_removed == ("FROM_ENV", "MISSING")
    await service.apply(bastion.services, load_bundle(second), actor="t", source="x", ref=None, commit=None, path=None,
                        environment={})
    assert await bastion.services.tenant.rule_configuration() == {"ALREADY": "set-before", "HAND_SET": "by-hand"}


async def test_a_bundle_never_reads_a_server_setting_into_rules_configuration(bastion, tmp_path):
    master = "the-servers-master-key-0123456789"
    environment = {"BASTION_SECRET_KEY": master, "bastion_database_url": "postgresql://u:p@db/bastion", "FINE": "ok"}
    folder = write(tmp_path / "bundle", {
        "rules/uses.py": claim_rule("u", 1),
        "rules-configs/BASTION_SECRET_KEY.json": {},
        "rules-configs/bastion_database_url.json": {},
        "rules-configs/FINE.json": {},
    })
    bundle = load_bundle(folder)
    planned = await service.plan(bastion.services, bundle, environment=environment)
    assert len(planned.errors) == 2
    assert planned.errors[0].startswith("rules-configs/BASTION_SECRET_KEY.json: the key BASTION_SECRET_KEY is refused")
    assert planned.errors[1].startswith("rules-configs/bastion_database_url.json: the key bastion_database_url is refused")
    assert planned.config_set == ("FINE",)
    with pytest.raises(BundleError, match="BASTION_SECRET_KEY is refused"):
        await service.apply(bastion.services, bundle, actor="t", source="x", ref=None, commit=None, path=None,
                            environment=environment)
    assert await stored_rules(bastion) == {} and await bastion.services.tenant.rule_configuration() == {}
    assert await service.history(bastion.services) == []

    # A prefix cannot reach them either (BASTION_ + SECRET_KEY), but the namespace kept for rules can.
    prefixed = write(tmp_path / "prefixed", {"rules/uses.py": claim_rule("u", 1), "rules-configs/SECRET_KEY.json": {}})
    planned = await service.plan(bastion.services, load_bundle(prefixed), env_prefix="BASTION_", environment=environment)
    assert planned.errors == ("rules-configs/SECRET_KEY.json: the environment variable BASTION_SECRET_KEY is refused: names "
                              "starting with BASTION_ are the server's own settings (rules' values may live under "
                              "BASTION_RULES_CONFIG_)",)
    planned = await service.plan(bastion.services, load_bundle(prefixed), env_prefix="BASTION_RULES_CONFIG_",
                                 environment={"BASTION_RULES_CONFIG_SECRET_KEY": "for-a-rule"})
    assert not planned.errors and planned.config_set == ("SECRET_KEY",)


def test_no_setting_lives_in_the_namespace_kept_for_rules_values():
    """values.py reads BASTION_RULES_CONFIG_* for rules: a setting named there would be readable by a bundle."""
    from bastion.deploy.values import RULES_CONFIG_PREFIX
    from bastion.settings import Settings

    kept = RULES_CONFIG_PREFIX.removeprefix("BASTION_").lower()
    assert [name for name in Settings.model_fields if name.lower().startswith(kept)] == []


def test_the_cli_refuses_a_bundle_naming_the_servers_master_key(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_SECRET_KEY", "cli-master-key-0123456789abcdef")
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    folder = write(tmp_path / "bundle", {"rules/uses.py": claim_rule("u", 1), "rules-configs/BASTION_SECRET_KEY.json": {}})
    result = runner.invoke(main_command(), ["deploy", str(folder)])
    assert result.exit_code == 1, result.output
    assert "the key BASTION_SECRET_KEY is refused" in result.output and "nothing was changed" in result.output
    assert "cli-master-key" not in result.output
    prefixed = write(tmp_path / "prefixed", {"rules/uses.py": claim_rule("u", 1), "rules-configs/SECRET_KEY.json": {}})
    result = runner.invoke(main_command(), ["deploy", str(prefixed), "--env-prefix", "BASTION_"])
    assert result.exit_code == 1 and "the environment variable BASTION_SECRET_KEY is refused" in result.output
    assert "no rules" in runner.invoke(main_command(), ["rules", "list"]).output
    assert "no deployments" in runner.invoke(main_command(), ["deploy", "history"]).output


# -- history, rollback, drift ------------------------------------------------------------


async def test_rollback_restores_an_earlier_deployments_rules_exactly(bastion, tmp_path):
    first = await deploy(bastion, write(tmp_path / "one", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2, "enabled": False},
    }))
    rules_of_first = sorted((r["name"], r["script"], r["order"], r["enabled"]) for r in
                            (await bastion.management("GET", "/rules")).json())
    second = await deploy(bastion, write(tmp_path / "two", {
        "rules/alpha.py": claim_rule("a", 2), "rules/alpha.json": {"order": 2},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 1},
        "rules/gamma.py": claim_rule("g", 1),
    }))
    assert [d.id for d in await service.history(bastion.services)] == [second.id, first.id]

    rolled = await service.rollback(bastion.services, None, actor="t")  # default: the one before the latest
    assert rolled.rollback_of == first.id and rolled.content_hash == first.content_hash
    after = sorted((r["name"], r["script"], r["order"], r["enabled"]) for r in (await bastion.management("GET", "/rules")).json())
    assert after == rules_of_first
    assert [d.id for d in await service.history(bastion.services)] == [rolled.id, second.id, first.id]
    assert (await service.drift(bastion.services)).drifted is False

    forward = await service.rollback(bastion.services, second.id, actor="t")
    assert forward.rollback_of == second.id
    assert {name: v[0] for name, v in (await stored_rules(bastion)).items()} == {"alpha": 2, "beta": 1, "gamma": 3}
    with pytest.raises(DeployError, match="no deployment dep_nope"):
        await service.rollback(bastion.services, "dep_nope", actor="t")


async def test_rollback_needs_an_earlier_deployment(bastion, tmp_path):
    with pytest.raises(DeployError, match="nothing to roll back to"):
        await service.rollback(bastion.services, None, actor="t")


def test_the_cli_status_exit_code_fails_on_drift(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("API_KEY", "deployed-value")
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    folder = write(tmp_path / "bundle", {"rules/alpha.py": claim_rule("a", 1), "rules-configs/API_KEY.json": {}})
    assert runner.invoke(main_command(), ["deploy", str(folder)]).exit_code == 0
    clean = runner.invoke(main_command(), ["deploy", "status", "--exit-code"])
    assert clean.exit_code == 0 and "no drift" in clean.output

    by_hand = write(tmp_path / "extra", {"by_hand.py": claim_rule("h", 1)})
    assert runner.invoke(main_command(), ["rules", "add", str(by_hand / "by_hand.py")]).exit_code == 0
    drifted = runner.invoke(main_command(), ["deploy", "status", "--exit-code"])
    assert drifted.exit_code == 1 and "+ created    by-hand" in drifted.output
    # Without --exit-code the report is the same and the status 0.
    reported = runner.invoke(main_command(), ["deploy", "status"])
    assert reported.exit_code == 0 and "+ created    by-hand" in reported.output

    # A value set by hand is drift too, shown by name only.
    assert runner.invoke(main_command(), ["rules", "config", "set", "API_KEY", "changed-by-hand"]).exit_code == 0
    drifted = runner.invoke(main_command(), ["deploy", "status", "--exit-code"])
    assert drifted.exit_code == 1 and "~ config     API_KEY  (value changed)" in drifted.output
    assert "changed-by-hand" not in drifted.output and "deployed-value" not in drifted.output


def test_the_cli_rollback_plan_prints_the_plan_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    first = write(tmp_path / "one", {"rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1}})
    second = write(tmp_path / "two", {"rules/alpha.py": claim_rule("a", 2), "rules/alpha.json": {"order": 1},
                                      "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2}})
    assert runner.invoke(main_command(), ["deploy", str(first)]).exit_code == 0
    assert runner.invoke(main_command(), ["deploy", str(second)]).exit_code == 0
    history = runner.invoke(main_command(), ["deploy", "history"]).output.splitlines()
    first_id = history[-1].split()[0]
    rules_before = runner.invoke(main_command(), ["rules", "list"]).output

    for arguments in (["deploy", "rollback", "--plan"], ["deploy", "rollback", first_id, "--plan"]):
        planned = runner.invoke(main_command(), arguments)
        assert planned.exit_code == 0, planned.output
        assert f"Plan: rollback to deployment {first_id}" in planned.output
        assert "~ change   alpha  (script)" in planned.output and "- remove   beta  (login_success, order 2)" in planned.output
        assert "rolled back" not in planned.output

    assert runner.invoke(main_command(), ["rules", "list"]).output == rules_before
    assert runner.invoke(main_command(), ["deploy", "history"]).output.splitlines() == history
    assert "no drift" in runner.invoke(main_command(), ["deploy", "status"]).output


async def test_drift_reports_changes_made_through_the_management_api(bastion, tmp_path):
    assert (await service.drift(bastion.services)).deployment is None
    await deploy(bastion, write(tmp_path / "one", {
        "rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 1},
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 2},
        "rules/gamma.py": claim_rule("g", 1), "rules/gamma.json": {"order": 3},
    }))
    assert (await service.drift(bastion.services)).drifted is False
    ids = {r["name"]: r["id"] for r in (await bastion.management("GET", "/rules")).json()}
    assert (await bastion.management("PATCH", f"/rules/{ids['alpha']}", json={"script": claim_rule("a", 9), "order": 10})).status_code == 200
    assert (await bastion.management("PATCH", f"/rules/{ids['beta']}", json={"enabled": False})).status_code == 200
    assert (await bastion.management("DELETE", f"/rules/{ids['gamma']}")).status_code == 204
    assert (await bastion.management("POST", "/rules", json={"name": "by-hand", "script": claim_rule("h", 1)})).status_code == 201

    found = await service.drift(bastion.services)
    assert found.drifted
    assert found.changes.summary() == {"added": ["by-hand"], "changed": ["alpha"], "reordered": ["alpha"], "enabled": [],
                                       "disabled": ["beta"], "removed": ["gamma"]}
    from bastion.deploy.drift import render_drift

    text = render_drift(found)
    assert "+ created    by-hand" in text and "^ reordered  alpha  (1 -> 10)" in text and "- deleted    gamma" in text
    assert "+    context.id_token['https://example.com/a'] = 9" in text


async def test_drift_reports_configuration_values_changed_added_or_removed_by_their_digests(bastion, tmp_path):
    deployment = await deploy(bastion, write(tmp_path / "one", {
        "rules/uses.py": claim_rule("u", 1), "rules-configs/API_KEY.json": {}, "rules-configs/OTHER.json": {},
    }), environment={"API_KEY": "first-value", "OTHER": "other-value"})
    digests = deployment.snapshot["config_digests"]
    assert sorted(digests) == ["API_KEY", "OTHER"] and len(set(digests.values())) == 2
    assert "first-value" not in json.dumps(deployment.snapshot) + json.dumps(deployment.summary)
    assert (await service.drift(bastion.services)).drifted is False

    # The same value written again is no drift; another value is.
    assert (await bastion.management("PUT", "/rules-configs/API_KEY", json={"value": "first-value"})).status_code == 200
    assert (await service.drift(bastion.services)).drifted is False
    assert (await bastion.management("PUT", "/rules-configs/API_KEY", json={"value": "rotated"})).status_code == 200
    assert (await bastion.management("PUT", "/rules-configs/NEW_KEY", json={"value": "by-hand"})).status_code == 200
    assert (await bastion.management("DELETE", "/rules-configs/OTHER")).status_code == 204
    found = await service.drift(bastion.services)
    assert found.drifted and found.changes.empty
    assert (found.changed_config_keys, found.added_config_keys, found.missing_config_keys) == (("API_KEY",), ("NEW_KEY",), ("OTHER",))
    from bastion.deploy.drift import render_drift

    text = render_drift(found)
    assert "~ config     API_KEY  (value changed)" in text and "+ config     NEW_KEY  (key added since)" in text
    assert "- config     OTHER  (no longer set)" in text
    assert "rotated" not in text and "by-hand" not in text and "first-value" not in text

    # A deployment records the values as they now are (set by hand too): no drift after it.
    await deploy(bastion, write(tmp_path / "two", {"rules/uses.py": claim_rule("u", 1), "rules-configs/API_KEY.json": {}}),
                 environment={})
    assert (await service.drift(bastion.services)).drifted is False


def test_value_digests_need_the_servers_secret_and_bind_the_key():
    import hashlib

    from bastion.deploy.values import ValueDigests

    ours, theirs = ValueDigests("a" * 32), ValueDigests("b" * 32)
    assert ours.of("API_KEY", "v") == ValueDigests("a" * 32).of("API_KEY", "v")
    assert ours.of("API_KEY", "v") != theirs.of("API_KEY", "v")  # not computable without the secret
    assert ours.of("API_KEY", "v") != ours.of("OTHER", "v")  # equal values do not show under two keys
    assert ours.of("API_KEY", "v") not in (hashlib.sha256(b"v").hexdigest(), hashlib.sha256(b"API_KEY\x00v").hexdigest())


async def test_a_deployment_recorded_before_digests_reports_only_its_missing_keys(bastion):
    async with bastion.services.database.transaction() as session:
        await admin.set_rule_config(session, bastion.services.sealer, key="NAMED", value="v")
        await admin.set_rule_config(session, bastion.services.sealer, key="HAND_SET", value="v")
        await deployment_store.lock_deployments(session)
        await deployment_store.insert_deployment(
            session, id="dep_old", source="s", ref=None, commit=None, path=None, content_hash="0" * 64, actor="t",
            snapshot={"rules": [], "config_keys": ["NAMED", "GONE"]}, summary={}, rollback_of=None)
    found = await service.drift(bastion.services)
    assert found.missing_config_keys == ("GONE",) and not found.changed_config_keys and not found.added_config_keys


# -- manual rules ---------------------------------------------------------------------


async def test_manual_rules_are_never_touched_and_their_orders_count(bastion, tmp_path):
    created = await bastion.management("POST", "/rules", json={"name": "hand-made", "script": claim_rule("h", 1), "order": 2})
    assert created.status_code == 201
    assert await service.add_manual_rule(bastion.services, "hand-made") is True
    assert await service.manual_rules(bastion.services) == ["hand-made"]

    clashing = write(tmp_path / "clash", {"rules/alpha.py": claim_rule("a", 1), "rules/alpha.json": {"order": 2}})
    planned = await service.plan(bastion.services, load_bundle(clashing))
    assert planned.errors == ("rules/alpha.json: order 2 in stage login_success is held by the manual rule 'hand-made'",)

    folder = write(tmp_path / "bundle", {
        "rules/alpha.py": claim_rule("a", 1),
        "rules/beta.py": claim_rule("b", 1), "rules/beta.json": {"order": 1},
        "rules/hand_made.py": claim_rule("h", 2), "rules/hand_made.json": {"order": 9},
    })
    planned = await service.plan(bastion.services, load_bundle(folder))
    assert planned.skipped_manual == ("hand-made",) and any("manual rule: skipped" in w for w in planned.warnings)
    deployment = await deploy(bastion, folder)
    rules = await stored_rules(bastion)
    assert rules["hand-made"][:2] == (2, True) and rules["hand-made"][4] == claim_rule("h", 1)
    assert rules["alpha"][0] == 3  # after the manual rule's order
    assert "hand-made" not in [r["name"] for r in deployment.snapshot["rules"]]

    await deploy(bastion, write(tmp_path / "empty", {"rules/.gitkeep": ""}))
    assert list(await stored_rules(bastion)) == ["hand-made"]
    assert await service.remove_manual_rule(bastion.services, "hand-made") is True
    assert await service.remove_manual_rule(bastion.services, "hand-made") is False


def test_the_manual_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    assert runner.invoke(main_command(), ["migrate"]).exit_code == 0
    assert "no manual rules" in runner.invoke(main_command(), ["deploy", "manual", "list"]).output
    assert runner.invoke(main_command(), ["deploy", "manual", "add", "Legacy Rule"]).exit_code == 0
    assert "Legacy Rule" in runner.invoke(main_command(), ["deploy", "manual", "list"]).output
    bad = runner.invoke(main_command(), ["deploy", "manual", "add", "-x-"])
    assert bad.exit_code != 0
    assert runner.invoke(main_command(), ["deploy", "manual", "remove", "Legacy Rule"]).exit_code == 0
    again = runner.invoke(main_command(), ["deploy", "manual", "remove", "Legacy Rule"])
    assert again.exit_code == 1 and "is not manual" in again.output


# -- storage -------------------------------------------------------------------------


async def test_deployments_are_listed_newest_first(bastion):
    async with bastion.services.database.transaction() as session:
        await deployment_store.lock_deployments(session)
        for number in range(3):
            await deployment_store.insert_deployment(
                session, id=f"dep_{number}", source="s", ref=None, commit=None, path=None, content_hash="0" * 64,
                actor="t", snapshot={"rules": [], "config_keys": []}, summary={}, rollback_of=None)
    async with bastion.services.database.reader() as session:
        assert [d.id for d in await deployment_store.list_deployments(session, limit=2)] == ["dep_2", "dep_1"]
        assert (await deployment_store.get_deployment(session, id="dep_0")).snapshot == {"rules": [], "config_keys": []}


# -- a login runs what was deployed --------------------------------------------------------


async def test_a_deployed_rule_runs_in_a_login(bastion, tmp_path):
    client = await bastion.create_client()
    await bastion.create_user()
    await deploy(bastion, write(tmp_path / "bundle", {
        "rules/tag_tokens.py": "def rule(user, context, api):\n"
                               "    context.id_token['https://example.com/deployed'] = api.configuration['TAG']\n",
        "rules-configs/TAG.json": {},
    }), environment={"TAG": "from-git"})
    tokens = await bastion.code_tokens(client)
    keys = public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])
    assert verify_jwt(tokens["id_token"], keys)[1]["https://example.com/deployed"] == "from-git"
