"""bastion.testing, the pytest kit for rule authors: its factories build what production builds,
its runs go through the production worker pool and give what a real login gives, its recorder
answers and records every `api` call, unexpected HTTP calls fail the test, and
`bastion rules test` runs a rules folder's tests with pytest's exit code.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.rules.context import SECRET_PARAMETERS
from bastion.saml.configuration import DEFAULT_MAPPINGS
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.testing import (
    ANY,
    PROTOCOLS,
    RuleScriptRefused,
    RulesFolderError,
    UnexpectedHttpCall,
    make_context,
    make_user,
    rules_from_folder,
)
from bastion.testing import factories

from conftest import PASSWORD, add_rule

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
NS = "https://example.com/"


def rule(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def spy_on(pool, monkeypatch, *, is_async: bool) -> list[dict]:
    """Record the jobs a pool is given, and let them run."""
    jobs: list[dict] = []
    original = pool.run
    if is_async:
        async def spy(job, handle_call, *, timeout):
            jobs.append(copy.deepcopy(job))
            return await original(job, handle_call, timeout=timeout)
    else:
        def spy(job, handle_call, *, timeout=None):
            jobs.append(copy.deepcopy(job))
            return original(job, handle_call, timeout=timeout)
    monkeypatch.setattr(pool, "run", spy)
    return jobs


# -- the same as production ------------------------------------------------------------------

CLAIMS_RULE = rule("""
    def rule(user, context, api):
        context.id_token["https://example.com/plan"] = user.app_metadata.get("plan")
        context.id_token["https://example.com/app"] = context.client_name
        context.id_token["sub"] = "someone-else"  # reserved: ignored
        context.access_token["https://example.com/logins"] = context.stats["logins_count"]
        context.access_token["https://example.com/connection"] = context.connection
        context.access_token["https://example.com/protocol"] = context.protocol
        context.access_token["https://example.com/methods"] = [m["name"] for m in context.authentication["methods"]]
        user.picture = "https://example.com/alice.png"
""")


async def test_a_rule_gives_the_same_claims_through_the_kit_as_in_a_real_login(bastion, rule_runner, monkeypatch):
    engine_jobs = spy_on(bastion.services.rules.pool, monkeypatch, is_async=True)
    kit_jobs = spy_on(rule_runner.pool, monkeypatch, is_async=False)
    await add_rule(bastion, CLAIMS_RULE, name="claims")
    client = await bastion.create_client()
    await bastion.create_user(app_metadata={"plan": "gold"})

    tokens = await bastion.code_tokens(client)
    user = make_user(app_metadata={"plan": "gold"})
    result = rule_runner.run(script=CLAIMS_RULE, user=user, context=make_context(user=user, client_name="Test App"))

    id_claims, access_claims = jwt_claims(tokens["id_token"]), jwt_claims(tokens["access_token"])
    assert {k: v for k, v in id_claims.items() if k.startswith(NS)} == result.id_token_claims
    assert {k: v for k, v in access_claims.items() if k.startswith(NS)} == result.access_token_claims
    assert result.id_token_claims[NS + "plan"] == "gold" and result.access_token_claims[NS + "logins"] == 1
    assert id_claims["picture"] == result.profile["picture"] == "https://example.com/alice.png"
    assert id_claims["sub"] != "someone-else" and any("'sub'" in w for w in result.warnings)

    # The kit sends the job the engine sends, built from user and context of the same shape.
    (engine_job,), (kit_job,) = engine_jobs, kit_jobs
    assert kit_job.keys() == engine_job.keys()
    assert kit_job["rules"][0].keys() == engine_job["rules"][0].keys()
    assert kit_job["rules"][0]["key"].endswith(engine_job["rules"][0]["key"].split(":")[1])  # same script, same digest
    assert_same_shape(kit_job["user"], engine_job["user"])
    assert_same_shape(kit_job["context"], engine_job["context"])
    assert kit_job["context"]["request"]["query"].keys() == engine_job["context"]["request"]["query"].keys() - {"code_challenge", "code_challenge_method"}
    assert kit_job["context"]["connection_options"] == engine_job["context"]["connection_options"]


def assert_same_shape(kit: dict, production: dict) -> None:
    """Same keys at the top and in every record rules read as one (request, stats, sso...)."""
    assert kit.keys() == production.keys(), (kit.keys() ^ production.keys())
    for key, value in production.items():
        if key in ("request", "stats", "sso", "authorization", "authentication"):
            assert kit[key].keys() == value.keys(), key
        if key == "identities":
            assert [i.keys() for i in kit[key]] == [i.keys() for i in value]
        if key == "authentication":
            assert [m.keys() for m in kit[key]["methods"]] == [m.keys() for m in value["methods"]]


async def test_the_password_grant_context_matches_make_context(bastion, rule_runner, monkeypatch):
    engine_jobs = spy_on(bastion.services.rules.pool, monkeypatch, is_async=True)
    await add_rule(bastion, "def rule(user, context, api):\n    pass\n")
    client = await bastion.create_client()
    await bastion.create_user()

    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "password", "username": "alice@example.com", "password": PASSWORD, "scope": "openid",
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    })
    assert response.status_code == 200, response.text

    (job,) = engine_jobs
    kit = make_context("oauth2-resource-owner")
    assert_same_shape(kit, job["context"])
    assert kit["session_id"] is job["context"]["session_id"] is None
    assert kit["request"]["body"].keys() == job["context"]["request"]["body"].keys()
    assert_same_shape(make_user(), job["user"])


def test_the_factories_defaults():
    user = make_user()
    assert (user["user_id"], user["email"], user["email_verified"], user["logins_count"]) == ("auth0|alice", "alice@example.com", True, 1)
    assert user["identities"] == [{"connection": DEFAULT_CONNECTION, "user_id": "alice", "provider": "auth0", "is_social": False, "profile_data": {}}]
    assert user["app_metadata"] == user["user_metadata"] == {} and user["multifactor"] == []
    context = make_context()
    assert (context["protocol"], context["client_name"], context["connection"]) == ("oidc-basic-profile", "My App", DEFAULT_CONNECTION)
    assert (context["request"]["ip"], context["stats"]["logins_count"]) == ("203.0.113.7", 1)
    assert context["connection_strategy"] == "auth0" and context["session_id"]
    assert make_context(user=make_user(logins_count=7))["stats"]["logins_count"] == 7


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_keeps_secrets_out_of_the_request(protocol):
    context = make_context(protocol)
    assert context["protocol"] == protocol
    request = context["request"]
    assert not (set(request["query"]) | set(request["body"])) & SECRET_PARAMETERS
    assert set(context) >= set(make_context())  # one shape for all


def test_the_protocols_specifics():
    assert make_context("redirect-callback")["original_protocol"] == "oidc-basic-profile"
    assert make_context("redirect-callback", original_protocol="samlp")["saml_configuration"]["mappings"] == DEFAULT_MAPPINGS
    assert make_context("oauth2-resource-owner")["request"]["body"]["grant_type"] == "password"
    passwordless = make_context("oauth2-password")
    assert (passwordless["connection"], passwordless["connection_strategy"]) == ("email", "email")
    assert passwordless["authentication"]["methods"][0]["name"] == "email" and passwordless["session_id"] is None
    assert make_context("oauth2-refresh-token")["request"]["body"] == {"grant_type": "refresh_token", "client_id": factories.DEFAULT_CLIENT_ID}
    saml = make_context("samlp", saml_addon={"lifetimeInSeconds": 600}, saml_configuration={"audience": "urn:sp"})["saml_configuration"]
    assert (saml["lifetime_in_seconds"], saml["audience"], saml["issuer"]) == (600, "urn:sp", "urn:auth.example.com")
    with pytest.raises(ValueError, match="unknown protocol"):
        make_context("oauth2-client-credentials")
    with pytest.raises(ValueError, match="SAML"):
        make_context(saml_configuration={})


# -- outcomes --------------------------------------------------------------------------------


def test_denial_error_and_timeout(rule_runner):
    rule_runner.run(script="def rule(user, context, api):\n    raise UnauthorizedError('not today')\n").assert_denied("not today")

    failed = rule_runner.run(script=rule("""
        def helper(value):
            return 1 / value

        def rule(user, context, api):
            print("about to divide")
            helper(0)
    """))
    failed.assert_error("ZeroDivisionError")
    assert failed.error == "ZeroDivisionError: division by zero"
    assert "line 2, in helper\n    return 1 / value" in failed.traceback
    assert failed.logs == {"rule": ["about to divide"]}
    with pytest.raises(AssertionError, match=r"(?s)expected the login to be allowed.*ZeroDivisionError.*\| about to divide"):
        failed.assert_allowed()

    rule_runner.run(script="def rule(user, context, api):\n    while True:\n        pass\n", timeout=1).assert_timeout()


def test_assertion_helpers_explain_their_failures(rule_runner):
    result = rule_runner.run(script="def rule(user, context, api):\n    context.id_token['https://example.com/a'] = 1\n")
    result.assert_claim(NS + "a", 1, token="id").assert_claim(NS + "a", ANY, token="id").assert_no_claim(NS + "a", token="access")
    with pytest.raises(AssertionError, match="the id token's claim 'https://example.com/a' is 1, expected 2"):
        result.assert_claim(NS + "a", 2, token="id")
    with pytest.raises(AssertionError, match="the access token has no claim"):
        result.assert_claim(NS + "a")
    with pytest.raises(AssertionError, match="expected the login to be denied"):
        result.assert_denied()


def test_configuration_secrets_are_redacted_as_in_execution_records(rule_runner):
    result = rule_runner.run(
        script="def rule(user, context, api):\n    print(api.configuration['API_KEY'])\n    raise UnauthorizedError('key ' + api.configuration['API_KEY'])\n",
        configuration={"API_KEY": "very-secret-value"},
    )
    result.assert_denied("key [redacted]")
    assert result.logs["rule"] == ["[redacted]"]


# -- the sandbox -----------------------------------------------------------------------------


def test_the_production_sandbox_applies(rule_runner):
    with pytest.raises(RuleScriptRefused, match="line 1: import of 'os' is not allowed"):
        rule_runner.run(script="import os\ndef rule(user, context, api):\n    pass\n")
    # Sent anyway, the worker refuses it too; a socket cannot even be imported.
    for module in ("os", "socket"):
        result = rule_runner.run(script=f"import {module}\ndef rule(user, context, api):\n    pass\n", check_scripts=False)
        result.assert_error(f"import of {module!r} is not allowed in rules")
    sandbox = rule_runner.sandbox
    assert sandbox["seccomp"] is True and sandbox["file_writes"] is False and sandbox["memory_mb"] == 512


# -- effects ---------------------------------------------------------------------------------


def test_http_stubs_match_method_url_query_and_prefix(rule_runner):
    rule_runner.http.stub("GET", "https://api.example.com/users", json={"who": "any"})
    rule_runner.http.stub("GET", "https://api.example.com/users", query={"id": "7"}, json={"who": "seven"})
    rule_runner.http.stub("*", "https://files.example.com/", prefix=True, status=201, text="created")
    result = rule_runner.run(script=rule("""
        async def rule(user, context, api):
            one = await api.http.get("https://api.example.com/users?id=7")
            two = await api.http.get("https://api.example.com/users", params={"id": "8"})
            three = await api.http.put("https://files.example.com/a/b.txt", data="x")
            context.id_token["https://example.com/r"] = [one.json()["who"], two.json()["who"], three.status_code, three.text]
    """))
    result.assert_claim(NS + "r", ["seven", "any", 201, "created"], token="id")
    assert [str(r) for r in result.effects.http_requests] == [
        "GET https://api.example.com/users?id=7", "GET https://api.example.com/users", "PUT https://files.example.com/a/b.txt",
    ]
    assert result.effects.requested("GET", "https://api.example.com/users")[1].query == {"id": "8"}


def test_queued_requests_emails_metadata_and_redirect_tokens_are_recorded(rule_runner):
    result = rule_runner.run(script=rule("""
        async def rule(user, context, api):
            delivery = await api.http.queue("POST", "https://hooks.example.com/login", json={"user": user.user_id})
            await api.email.send(to="ops@example.com", subject="Login", text="alice logged in")
            await api.email.send(template="welcome_email")
            await api.users.update_app_metadata(user.user_id, {"seen": True, "gone": None})
            token = api.redirect.encode_token({"step": 2})
            claims = api.redirect.validate_token(token)
            context.id_token["https://example.com/r"] = [delivery, claims["step"], claims["sub"], user.app_metadata]
    """), user=make_user(app_metadata={"gone": 1, "kept": 2}))
    result.assert_claim(NS + "r", ["dlv_test_0001", 2, "auth0|alice", {"kept": 2, "seen": True}], token="id")
    result.assert_queued("POST", "https://hooks.example.com/login", json={"user": "auth0|alice"}, count=1)
    assert [(e.to, e.subject, e.template) for e in result.effects.emails] == [("ops@example.com", "Login", None), (None, None, "welcome_email")]
    assert result.stored_app_metadata == {"kept": 2, "seen": True}
    assert result.effects.redirect_tokens[0].payload == {"step": 2}
    assert [call[0] for call in result.effects.calls] == [
        "http.queue", "email.send", "email.send", "users.update_app_metadata", "redirect.encode_token", "redirect.validate_token",
    ]


def test_production_checks_still_refuse_bad_calls(rule_runner):
    rule_runner.allowed_hosts = [".example.com"]
    result = rule_runner.run(script=rule("""
        async def rule(user, context, api):
            refused = []
            for call in (
                lambda: api.http.queue("POST", "ftp://files.example.com/x"),
                lambda: api.http.queue("POST", "https://elsewhere.test/x"),
                lambda: api.users.update_app_metadata("auth0|someone-else", {"a": 1}),
                lambda: api.email.send(to="a@example.com"),
            ):
                try:
                    await call()
                except Exception as error:
                    refused.append(str(error))
            context.id_token["https://example.com/refused"] = refused
    """))
    refused = result.id_token_claims[NS + "refused"]
    assert "http and https URLs only" in refused[0] and "BASTION_RULES_HTTP_ALLOWED_HOSTS" in refused[1]
    assert "only" in refused[2] and "needs to=, subject=" in refused[3]
    assert result.effects.queued_requests == [] and result.effects.metadata_updates == []


def test_an_unexpected_call_fails_the_run_even_when_the_rule_catches_it(rule_runner):
    rule_runner.http.stub("GET", "https://api.example.com/known")
    with pytest.raises(UnexpectedHttpCall) as failure:
        rule_runner.run(script=rule("""
            async def rule(user, context, api):
                try:
                    await api.http.post("https://api.example.com/unknown?key=1", json={})
                except Exception:
                    pass
        """))
    message = str(failure.value)
    assert "POST https://api.example.com/unknown?key=1" in message
    assert 'rule_runner.http.stub("POST", "https://api.example.com/unknown"' in message
    assert "Stubs registered: GET https://api.example.com/known -> 200" in message


def test_an_unexpected_call_fails_a_pytest_test_with_a_clear_message(pytester):
    pytester.makepyfile(test_rule=rule('''
        SCRIPT = """
        async def rule(user, context, api):
            response = await api.http.get("https://api.segment.io/v1/track")
            context.id_token["https://example.com/ok"] = response.ok
        """

        def test_stubbed(rule_runner):
            rule_runner.http.stub("GET", "https://api.segment.io/v1/track", json={"success": True})
            rule_runner.run(script=SCRIPT).assert_claim("https://example.com/ok", True, token="id")

        def test_not_stubbed(rule_runner):
            rule_runner.run(script=SCRIPT)
    '''))
    outcome = pytester.runpytest_subprocess("-p", "bastion")
    outcome.assert_outcomes(passed=1, failed=1)
    outcome.stdout.fnmatch_lines([
        "*UnexpectedHttpCall: The rules made HTTP requests that no stub answers*",
        "*GET https://api.segment.io/v1/track*",
        "*FAILED test_rule.py::test_not_stubbed*",
    ])


async def test_async_tests_await_runs(rule_runner):
    result = await rule_runner.run_async(script="def rule(user, context, api):\n    context.access_token['https://example.com/a'] = 1\n")
    result.assert_claim(NS + "a", 1, token="access")


# -- SAML ------------------------------------------------------------------------------------


def test_saml_attributes_and_name_id_come_from_the_final_user_and_configuration(rule_runner):
    user = make_user(app_metadata={"department": "R&D"}, given_name="Alice")
    result = rule_runner.run(script=rule("""
        def rule(user, context, api):
            user.badge = "B-7"
            context.saml_configuration.mappings = {
                "urn:badge": "badge", "urn:department": "app_metadata.department",
            }
            context.saml_configuration["lifetimeInSeconds"] = 600
            context.saml_configuration["signature_algorithm"] = "rsa-sha1"
            context.saml_configuration["name_identifier_probes"] = ["urn:badge"]
    """), user=user, context=make_context("samlp", user=user))
    result.assert_saml_attribute("urn:badge", ["B-7"]).assert_saml_attribute("urn:department", ["R&D"])
    result.assert_saml_attribute("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", ["alice@example.com"])
    assert result.saml.name_id == "B-7"
    assert result.saml.configuration["lifetime_in_seconds"] == 600
    assert result.saml.configuration["signature_algorithm"] == "rsa-sha256"  # SHA-1 refused, with a warning
    assert any("SHA-1" in w for w in result.saml.warnings)
    assert rule_runner.run(script="def rule(user, context, api):\n    pass\n").saml is None  # not a SAML login


# -- rules folders ---------------------------------------------------------------------------


def test_a_rules_folder_runs_in_deploy_order(rule_runner, tmp_path):
    def add(name: str, settings: dict | None = None, *, suffix: str = ".py") -> None:
        (tmp_path / f"{name}{suffix}").write_text(f"def rule(user, context, api):\n    print({name!r})\n")
        if settings is not None:
            (tmp_path / f"{name}.json").write_text(json.dumps(settings))

    add("alpha", {"order": 3})
    add("beta", {"order": 1, "name": "beta-rule"})
    add("gamma")  # no order: after the ordered ones, by name
    add("delta")
    add("disabled", {"order": 2, "enabled": False})
    add("exported", None, suffix=".js")  # auth0-deploy-cli's layout: the JSON names the script
    (tmp_path / "exported.json").write_text(json.dumps({"name": "exported", "script": "./exported.js", "order": 2, "language": "python"}))
    add("javascript", {"order": 4, "language": "javascript"})
    (tmp_path / "test_alpha.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "conftest.py").write_text("")

    assert [s.name for s in rules_from_folder(tmp_path)] == ["beta-rule", "exported", "alpha", "delta", "gamma"]
    result = rule_runner.run(tmp_path)
    assert [line for lines in result.logs.values() for line in lines] == ["beta", "exported", "alpha", "delta", "gamma"]
    relative = rule_runner.run([tmp_path / "gamma.py", tmp_path / "beta.py"])
    assert list(relative.logs) == ["gamma", "beta-rule"]
    with pytest.raises(RulesFolderError, match="no rule file or folder 'missing.py'"):
        rule_runner.run("missing.py")


def test_a_bundle_is_read_by_the_deploy_reader(rule_runner, tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / "add_plan.py").write_text("def rule(user, context, api):\n    print('plan')\n")
    (tmp_path / "rules" / "deny_flagged.py").write_text("def rule(user, context, api):\n    print('flagged')\n")
    (tmp_path / "rules" / "deny_flagged.json").write_text(json.dumps({"order": 1}))
    (tmp_path / "tests" / "test_rules.py").write_text("")

    result = rule_runner.run(tmp_path)

    assert result.logs == {"deny-flagged": ["flagged"], "add-plan": ["plan"]}  # the deploy's names and order
    (tmp_path / "rules" / "deny_flagged.json").write_text(json.dumps({"order": "first"}))
    with pytest.raises(RulesFolderError, match="rules/deny_flagged.json: \"order\" must be an integer"):
        rule_runner.run(tmp_path)


# -- bastion rules test ----------------------------------------------------------------------

PASSING_TEST = rule("""
    def test_plan(rule_runner, make_user):
        result = rule_runner.run("../rules/plan.py", user=make_user(app_metadata={"plan": "gold"}))
        result.assert_claim("https://example.com/plan", "gold")
""")
PLAN_RULE = "def rule(user, context, api):\n    context.id_token['https://example.com/plan'] = user.app_metadata.get('plan')\n    context.access_token['https://example.com/plan'] = user.app_metadata.get('plan')\n"


def bastion_rules_test(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bastion", "rules", "test", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_bastion_rules_test_exit_codes(tmp_path):
    """A repository as `bastion deploy` reads it: rules/ for the rules, tests/ beside it."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / "plan.py").write_text(PLAN_RULE)
    test_file = tmp_path / "tests" / "test_plan.py"
    test_file.write_text(PASSING_TEST)

    passing = bastion_rules_test(tmp_path, "-v")  # default: the current folder; pytest's options may come first
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "1 passed" in passing.stdout

    test_file.write_text(PASSING_TEST.replace('"gold")\n', '"platinum")\n'))
    failing = bastion_rules_test(tmp_path, "tests", "-q")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "the id token's claim 'https://example.com/plan' is 'gold', expected 'platinum'" in failing.stdout

    assert bastion_rules_test(tmp_path, "rules").returncode == 5  # no tests collected
    assert bastion_rules_test(tmp_path, "missing").returncode == 4  # a usage error


# Templates with no kit test in templates/rules/tests/, each with why. Keep it empty: a template
# ships with its test (issue 9). A template listed here that gains a test must leave the list.
TEMPLATES_WITHOUT_KIT_TESTS: dict[str, str] = {}

# A pytest plugin for the examples' run: which template files each passing test ran.
RECORD_TEMPLATE_RUNS = rule("""
    import json, os
    from pathlib import Path

    from bastion.testing.runner import RuleRunner

    TEMPLATES = Path(os.environ["TEMPLATES_DIR"]).resolve()
    pending, ran = {}, {}
    current = [None]

    def pytest_configure(config):
        load = RuleRunner.load

        def recording(self, *args, **kwargs):
            sources = load(self, *args, **kwargs)
            for source in sources:
                if source.path is not None and source.path.resolve().parent == TEMPLATES:
                    pending.setdefault(current[0], set()).add(source.path.stem)
            return sources

        RuleRunner.load = recording

    def pytest_runtest_setup(item):
        current[0] = item.nodeid

    def pytest_runtest_logreport(report):
        if report.when == "call" and report.passed:
            for template in pending.pop(report.nodeid, ()):
                ran.setdefault(template, []).append(report.nodeid)

    def pytest_sessionfinish(session):
        Path(os.environ["TEMPLATE_RUNS_FILE"]).write_text(json.dumps(ran))
""")


def test_the_template_examples_pass_and_cover_every_template(tmp_path):
    """templates/rules/tests/: the shipped examples, run as a rule author would run them. Every
    template in templates/rules/ is run by at least one passing test (recorded during the run,
    not guessed from file names), except those explicitly listed above."""
    (tmp_path / "record_template_runs.py").write_text(RECORD_TEMPLATE_RUNS)
    runs_file = tmp_path / "runs.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
           "TEMPLATES_DIR": str(ROOT / "templates/rules"), "TEMPLATE_RUNS_FILE": str(runs_file)}
    run = subprocess.run([sys.executable, "-m", "bastion", "rules", "test", "templates/rules/tests", "-q", "-p", "no:cacheprovider",
                          "-p", "record_template_runs"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "failed" not in run.stdout, run.stdout

    templates = sorted(path.stem for path in (ROOT / "templates/rules").glob("*.py"))
    ran = json.loads(runs_file.read_text())
    untested = sorted(set(templates) - set(ran))
    assert untested == sorted(TEMPLATES_WITHOUT_KIT_TESTS), f"templates without a passing kit test: {untested}"
    assert set(ran) <= set(templates)


def test_the_documentation_names_the_example_tests_there_are():
    """docs/testing-rules.md's list of examples is the real set of template tests."""
    documented = set(re.findall(r"`(test_\w+\.py)`", (ROOT / "docs/testing-rules.md").read_text()))
    existing = {path.name for path in (ROOT / "templates/rules/tests").glob("test_*.py")}
    assert documented == existing, {"documented, missing": documented - existing, "not documented": existing - documented}
