"""Administering rules: /api/v2/rules and /api/v2/rules-configs as Auth0's tools use them,
Bastion's "try a rule" (/rules/try, /rules/{id}/try), the execution records
(/rules-executions/{id}), and the `bastion rules` / `bastion logs` commands, on both
databases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

import httpx

from bastion.storage import rules as rule_store
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import PASSWORD

RULE_KEYS = {"id", "name", "script", "order", "enabled", "stage", "language"}
TRY_KEYS = {"status", "message", "user", "context", "tokens", "warnings", "records", "effects", "duration_ms", "dry_run", "execution_id"}
TOKEN_KEYS = {"id_token_claims", "access_token_claims", "scopes", "jti"}
EXECUTION_KEYS = {"id", "created_at", "protocol", "client_id", "user_id", "outcome", "duration_ms", "dry_run", "rules", "effects", "error",
                  "deliveries"}  # deliveries: the outbox entries its rules queued (docs/rules.md)

NOOP = "def rule(user, context, api):\n    pass\n"
CLAIM = 'def rule(user, context, api):\n    context.id_token["https://example.com/x"] = 1\n'
DENY = 'def rule(user, context, api):\n    raise UnauthorizedError("members only")\n'
METADATA = 'async def rule(user, context, api):\n    await api.users.update_app_metadata(user.user_id, {"a": 1})\n'
CONFIGURED = 'def rule(user, context, api):\n    context.id_token["https://example.com/k"] = api.configuration["API_KEY"]\n'
ORDER_CONFLICT = {"statusCode": 409, "error": "Conflict", "message": "A rule with the same order already exists", "errorCode": "rule_conflict"}
NAME_CONFLICT = {"statusCode": 409, "error": "Conflict", "message": "A rule with the same name already exists", "errorCode": "rule_conflict"}
NO_RULE = {"statusCode": 404, "error": "Not Found", "message": "The rule does not exist.", "errorCode": "inexistent_rule"}
CLI = Path(sys.executable).parent / "bastion"


# -- helpers ---------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, error_code: str | None = None) -> dict:
    """An Auth0 error body, never a trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"statusCode", "error", "message", "errorCode"}, body
    assert body["statusCode"] == status and body["error"] == HTTPStatus(status).phrase
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    if error_code is not None:
        assert body.get("errorCode") == error_code, body
    return body


def claim_rule(key: str, value) -> str:
    return f"def rule(user, context, api):\n    context.id_token[{key!r}] = {value!r}\n"


async def add_rule(bastion, name: str, script: str = NOOP, **fields) -> dict:
    response = await bastion.management("POST", "/rules", json={"name": name, "script": script, **fields})
    assert response.status_code == 201, response.text
    rule = response.json()
    assert set(rule) == RULE_KEYS
    return rule


async def try_rules(bastion, path: str = "/rules/try", **body) -> dict:
    response = await bastion.management("POST", path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == TRY_KEYS, answer
    return answer


async def stored_user(bastion, user_id: str) -> dict:
    response = await bastion.management("GET", "/users/" + quote(user_id, safe=""))
    assert response.status_code == 200, response.text
    return response.json()


# -- /rules: shapes, defaults, conflicts -----------------------------------------


async def test_create_rule_answers_auth0_shape_with_defaults(bastion):
    response = await bastion.management("POST", "/rules", json={"name": "add claims", "script": CLAIM})
    assert response.status_code == 201, response.text
    rule = response.json()
    assert set(rule) == RULE_KEYS
    assert re.fullmatch(r"rul_[A-Za-z0-9]{16}", rule["id"])
    assert rule == {"id": rule["id"], "name": "add claims", "script": CLAIM, "order": 1, "enabled": True,
                    "stage": "login_success", "language": "python"}

    fetched = await bastion.management("GET", f"/rules/{rule['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == rule


async def test_order_defaults_to_the_highest_of_its_stage_plus_one(bastion):
    await add_rule(bastion, "first", order=5)
    second = await add_rule(bastion, "second")
    assert second["order"] == 6
    other_stage = await add_rule(bastion, "pre authorize", stage="pre_authorize")
    assert other_stage["order"] == 1 and other_stage["stage"] == "pre_authorize"
    third = await add_rule(bastion, "third", enabled=False)
    assert third["order"] == 7 and third["enabled"] is False


async def test_duplicate_order_in_a_stage_is_409_rule_conflict(bastion):
    await add_rule(bastion, "one", order=1)
    response = await bastion.management("POST", "/rules", json={"name": "two", "script": NOOP, "order": 1})
    assert response.status_code == 409
    assert response.json() == ORDER_CONFLICT
    # The same order in another stage is fine.
    await add_rule(bastion, "failure one", order=1, stage="login_failure")
    listing = await bastion.management("GET", "/rules")
    assert sorted(r["name"] for r in listing.json()) == ["failure one", "one"]


async def test_patching_onto_a_taken_order_is_409_rule_conflict(bastion):
    await add_rule(bastion, "one", order=1)
    two = await add_rule(bastion, "two", order=2)
    response = await bastion.management("PATCH", f"/rules/{two['id']}", json={"order": 1})
    assert response.status_code == 409
    assert response.json() == ORDER_CONFLICT
    unchanged = await bastion.management("GET", f"/rules/{two['id']}")
    assert unchanged.json()["order"] == 2
    # deploy-cli's temporary re-order (max+1), then back to a free slot.
    moved = await bastion.management("PATCH", f"/rules/{two['id']}", json={"order": 3})
    assert moved.status_code == 200 and moved.json()["order"] == 3
    # Its own order is not a conflict.
    same = await bastion.management("PATCH", f"/rules/{two['id']}", json={"order": 3, "name": "two"})
    assert same.status_code == 200, same.text


async def test_duplicate_name_is_409_rule_conflict(bastion):
    one = await add_rule(bastion, "one")
    two = await add_rule(bastion, "two")
    response = await bastion.management("POST", "/rules", json={"name": "one", "script": NOOP})
    assert response.status_code == 409 and response.json() == NAME_CONFLICT
    renamed = await bastion.management("PATCH", f"/rules/{two['id']}", json={"name": one["name"]})
    assert renamed.status_code == 409 and renamed.json() == NAME_CONFLICT


async def test_unknown_rule_is_404_inexistent_rule(bastion):
    for method, path, body in [
        ("GET", "/rules/rul_doesnotexist0000", None),
        ("PATCH", "/rules/rul_doesnotexist0000", {"enabled": False}),
        ("DELETE", "/rules/rul_doesnotexist0000", None),
        ("POST", "/rules/rul_doesnotexist0000/try", {"user": {}}),
    ]:
        response = await bastion.management(method, path, json=body)
        assert response.status_code == 404, (method, response.text)
        assert response.json() == NO_RULE


async def test_rule_names_follow_auth0s_pattern(bastion):
    for name in ["-leading", "trailing ", "a_b", "ab", "semi;colon"]:
        response = await bastion.management("POST", "/rules", json={"name": name, "script": NOOP})
        body = assert_error(response, 400, "invalid_body")
        assert "name" in body["message"], body
    rule = await add_rule(bastion, "Has spaces-and-dashes 2")
    bad = await bastion.management("PATCH", f"/rules/{rule['id']}", json={"name": "-x-"})
    assert_error(bad, 400, "invalid_body")


async def test_a_syntax_error_is_refused_naming_its_line(bastion):
    script = "def rule(user, context, api):\n    x = 1\n    return x +\n"
    response = await bastion.management("POST", "/rules", json={"name": "broken", "script": script})
    body = assert_error(response, 400, "invalid_body")
    assert set(body) == {"statusCode", "error", "message", "errorCode"}
    assert body["message"].startswith("Invalid script: line 3: syntax error"), body
    listing = await bastion.management("GET", "/rules")
    assert listing.json() == []


async def test_a_forbidden_import_is_refused_naming_its_line(bastion):
    script = "import json\nimport os\n\ndef rule(user, context, api):\n    pass\n"
    response = await bastion.management("POST", "/rules", json={"name": "sneaky", "script": script})
    body = assert_error(response, 400, "invalid_body")
    assert body["message"].startswith("Invalid script: line 2: import of 'os' is not allowed"), body
    # ... and on PATCH too.
    rule = await add_rule(bastion, "fine")
    patched = await bastion.management("PATCH", f"/rules/{rule['id']}", json={"script": script})
    assert assert_error(patched, 400, "invalid_body")["message"].startswith("Invalid script: line 2:")
    assert (await bastion.management("GET", f"/rules/{rule['id']}")).json()["script"] == NOOP


async def test_a_script_without_rule_function_is_refused(bastion):
    response = await bastion.management("POST", "/rules", json={"name": "nothing", "script": "x = 1\n"})
    assert assert_error(response, 400, "invalid_body")["message"].startswith("Invalid script: ")


async def test_unknown_stage_and_language_are_400(bastion):
    stage = await bastion.management("POST", "/rules", json={"name": "staged", "script": NOOP, "stage": "login_maybe"})
    assert_error(stage, 400, "invalid_body")
    language = await bastion.management("POST", "/rules", json={"name": "lang", "script": NOOP, "language": "ruby"})
    assert_error(language, 400, "invalid_body")
    order = await bastion.management("POST", "/rules", json={"name": "neg", "script": NOOP, "order": -1})
    assert_error(order, 400, "invalid_body")
    missing = await bastion.management("POST", "/rules", json={"name": "no script"})
    assert_error(missing, 400, "invalid_body")


async def test_javascript_rules_are_stored_disabled_and_never_tried(bastion):
    script = "function (user, context, callback) { callback(null, user, context); }"
    rule = await add_rule(bastion, "legacy", script, language="javascript", enabled=True)
    assert rule["enabled"] is False and rule["language"] == "javascript" and rule["script"] == script
    enabled = await bastion.management("PATCH", f"/rules/{rule['id']}", json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is False
    tried = await bastion.management("POST", f"/rules/{rule['id']}/try", json={"user": {}})
    assert_error(tried, 400, "invalid_body")


async def test_patch_changes_fields_and_refuses_stage(bastion):
    rule = await add_rule(bastion, "editable", order=3)
    response = await bastion.management("PATCH", f"/rules/{rule['id']}", json={"enabled": False, "name": "edited", "script": CLAIM, "order": 9})
    assert response.status_code == 200, response.text
    assert response.json() == {**rule, "enabled": False, "name": "edited", "script": CLAIM, "order": 9}
    assert (await bastion.management("GET", f"/rules/{rule['id']}")).json() == response.json()

    staged = await bastion.management("PATCH", f"/rules/{rule['id']}", json={"stage": "pre_authorize"})
    assert_error(staged, 400, "invalid_body")
    assert (await bastion.management("GET", f"/rules/{rule['id']}")).json()["stage"] == "login_success"


async def test_delete_rule_is_204_then_404(bastion):
    rule = await add_rule(bastion, "short lived")
    response = await bastion.management("DELETE", f"/rules/{rule['id']}")
    assert response.status_code == 204 and response.content == b""
    assert (await bastion.management("GET", f"/rules/{rule['id']}")).json() == NO_RULE
    again = await bastion.management("DELETE", f"/rules/{rule['id']}")
    assert again.status_code == 404 and again.json() == NO_RULE


async def test_list_pages_with_include_totals_and_filters(bastion):
    for n in range(1, 4):
        await add_rule(bastion, f"rule {n}", order=n, enabled=n != 2)
    await add_rule(bastion, "failure", stage="login_failure")

    first = await bastion.management("GET", "/rules", params={"page": 0, "per_page": 2, "include_totals": "true"})
    assert first.status_code == 200
    body = first.json()
    assert {k: v for k, v in body.items() if k != "rules"} == {"start": 0, "limit": 2, "length": 2, "total": 4}
    assert [set(r) for r in body["rules"]] == [RULE_KEYS, RULE_KEYS]
    second = (await bastion.management("GET", "/rules", params={"page": 1, "per_page": 2, "include_totals": "true"})).json()
    assert second["start"] == 2 and second["length"] == 2 and second["total"] == 4
    assert {r["name"] for r in body["rules"] + second["rules"]} == {"rule 1", "rule 2", "rule 3", "failure"}

    bare = (await bastion.management("GET", "/rules", params={"page": 0, "per_page": 100})).json()
    assert isinstance(bare, list) and len(bare) == 4

    # What auth0-python 4.x's Rules.all() sends.
    legacy = await bastion.management("GET", "/rules?stage=login_success&include_fields=true&include_totals=false&enabled=true")
    assert legacy.status_code == 200, legacy.text
    assert [r["name"] for r in legacy.json()] == ["rule 1", "rule 3"]
    disabled = (await bastion.management("GET", "/rules", params={"enabled": "false"})).json()
    assert [r["name"] for r in disabled] == ["rule 2"]
    failures = (await bastion.management("GET", "/rules", params={"stage": "login_failure", "include_totals": "true"})).json()
    assert failures["total"] == 1 and failures["rules"][0]["name"] == "failure"
    assert_error(await bastion.management("GET", "/rules", params={"stage": "nope"}), 400, "invalid_query_string")


async def test_rules_endpoints_require_their_scopes(bastion):
    reader = {"Authorization": f"Bearer {await bastion.management_token(scope='read:rules')}"}
    assert (await bastion.http.get("/api/v2/rules", headers=reader)).status_code == 200
    created = await bastion.http.post("/api/v2/rules", headers=reader, json={"name": "nope", "script": NOOP})
    assert_error(created, 403, "insufficient_scope")
    rule = await add_rule(bastion, "guarded")
    for method, path in [("PATCH", f"/rules/{rule['id']}"), ("DELETE", f"/rules/{rule['id']}"),
                         ("POST", f"/rules/{rule['id']}/try"), ("POST", "/rules/try"),
                         ("PUT", "/rules-configs/KEY"), ("GET", "/rules-configs")]:
        response = await bastion.http.request(method, f"/api/v2{path}", headers=reader, json={"value": "v", "user": {}})
        assert_error(response, 403, "insufficient_scope")
    assert_error(await bastion.http.get("/api/v2/rules"), 401)


# -- /rules-configs ----------------------------------------------------------------


async def test_rules_configs_values_are_write_only(bastion):
    secret = "s3cr3t-value-never-shown"
    put = await bastion.management("PUT", "/rules-configs/API_KEY", json={"value": secret})
    assert put.status_code == 200 and put.json() == {"key": "API_KEY", "value": secret}
    await bastion.management("PUT", "/rules-configs/other-key_2", json={"value": "x"})

    listing = await bastion.management("GET", "/rules-configs")
    assert listing.status_code == 200
    assert listing.json() == [{"key": "API_KEY"}, {"key": "other-key_2"}]
    rule = await add_rule(bastion, "configured", CONFIGURED)
    for path in ["/rules-configs", "/rules", f"/rules/{rule['id']}", "/logs"]:
        response = await bastion.management("GET", path)
        assert response.status_code == 200 and secret not in response.text, path

    async with bastion.services.database.reader() as session:
        sealed = await rule_store.rule_config_values(session)
    assert sealed["API_KEY"] != secret and secret not in sealed["API_KEY"]

    # The rules see it, and a new value at once.
    user = await bastion.create_user()
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"])
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/k": secret}
    await bastion.management("PUT", "/rules-configs/API_KEY", json={"value": "rotated"})
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"])
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/k": "rotated"}


async def test_rules_configs_validation_and_delete(bastion):
    for key, body in [("bad key!", {"value": "v"}), ("dotted.key", {"value": "v"}), ("EMPTY", {"value": ""}),
                      ("NUMBER", {"value": 5}), ("MISSING", {})]:
        response = await bastion.management("PUT", f"/rules-configs/{quote(key)}", json=body)
        assert_error(response, 400, "invalid_body")
    assert (await bastion.management("GET", "/rules-configs")).json() == []

    await bastion.management("PUT", "/rules-configs/TEMP", json={"value": "v"})
    deleted = await bastion.management("DELETE", "/rules-configs/TEMP")
    assert deleted.status_code == 204
    assert (await bastion.management("GET", "/rules-configs")).json() == []
    missing = await bastion.management("DELETE", "/rules-configs/TEMP")
    assert_error(missing, 404)


# -- try ---------------------------------------------------------------------


async def test_try_a_rule_on_a_stored_user_shows_claims_and_stores_the_execution(bastion):
    user = await bastion.create_user()
    rule = await add_rule(bastion, "claims", CLAIM, enabled=False)  # tried even though disabled
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"])
    assert answer["status"] == "ok" and answer["message"] is None
    assert set(answer["tokens"]) == TOKEN_KEYS
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/x": 1}
    assert answer["tokens"]["access_token_claims"] == {} and answer["tokens"]["scopes"] is None
    assert answer["user"]["user_id"] == user["user_id"] and answer["user"]["email"] == "alice@example.com"
    assert answer["context"]["id_token"] == {"https://example.com/x": 1}
    assert answer["context"]["connection"] == DEFAULT_CONNECTION
    assert answer["context"]["protocol"] == "oidc-basic-profile"
    assert answer["dry_run"] is True and answer["effects"] == []
    assert [r["name"] for r in answer["records"]] == ["claims"]
    assert re.fullmatch(r"exe_[A-Za-z0-9]{20}", answer["execution_id"])

    record = await bastion.management("GET", f"/rules-executions/{answer['execution_id']}")
    assert record.status_code == 200, record.text
    execution = record.json()
    assert set(execution) == EXECUTION_KEYS
    assert execution["id"] == answer["execution_id"] and execution["outcome"] == "ok"
    assert execution["user_id"] == user["user_id"] and execution["dry_run"] is True
    assert execution["protocol"] == "oidc-basic-profile" and execution["error"] is None
    assert [r["name"] for r in execution["rules"]] == ["claims"]


async def test_try_with_a_json_user_fills_defaults(bastion):
    rule = await add_rule(bastion, "greets", 'def rule(user, context, api):\n'
                          '    context.id_token["https://example.com/who"] = [user.user_id, user.email, user.app_metadata, user.identities]\n')
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user={"email": "sample@example.com"})
    assert answer["status"] == "ok", answer
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/who": ["auth0|try", "sample@example.com", {}, []]}
    assert answer["user"]["user_metadata"] == {}
    assert answer["context"]["client_id"] and answer["context"]["connection"] == DEFAULT_CONNECTION

    claims = await add_rule(bastion, "claims", CLAIM)
    answer = await try_rules(bastion, f"/rules/{claims['id']}/try", user={"user_id": "auth0|given", "app_metadata": {"plan": "pro"}})
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/x": 1}
    assert answer["user"]["app_metadata"] == {"plan": "pro"}
    execution = (await bastion.management("GET", f"/rules-executions/{answer['execution_id']}")).json()
    assert execution["user_id"] == "auth0|given"


async def test_a_denying_rule_gives_status_denied_with_its_message(bastion):
    user = await bastion.create_user()
    rule = await add_rule(bastion, "gatekeeper", DENY)
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"])
    assert answer["status"] == "denied" and answer["message"] == "members only"
    assert answer["tokens"] is None
    execution = (await bastion.management("GET", f"/rules-executions/{answer['execution_id']}")).json()
    assert execution["outcome"] == "denied"


async def test_a_failing_rule_gives_status_error(bastion):
    rule = await add_rule(bastion, "crashes", 'def rule(user, context, api):\n    raise ValueError("boom")\n')
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user={})
    assert answer["status"] == "error" and "crashes" in answer["message"] and answer["tokens"] is None
    execution = (await bastion.management("GET", f"/rules-executions/{answer['execution_id']}")).json()
    assert execution["outcome"] == "error" and execution["error"] == answer["message"]


async def test_a_dry_run_records_the_effect_and_leaves_the_user_unchanged(bastion):
    user = await bastion.create_user(app_metadata={"plan": "free"})
    rule = await add_rule(bastion, "marks", METADATA)

    dry = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"])
    assert dry["status"] == "ok", dry
    assert dry["effects"] == [{"type": "users.update_app_metadata", "user_id": user["user_id"], "changes": {"a": 1}, "performed": False}]
    assert dry["user"]["app_metadata"] == {"plan": "free", "a": 1}  # what the pipeline saw
    assert (await stored_user(bastion, user["user_id"]))["app_metadata"] == {"plan": "free"}
    assert (await bastion.management("GET", f"/rules-executions/{dry['execution_id']}")).json()["effects"] == dry["effects"]

    performed = await try_rules(bastion, f"/rules/{rule['id']}/try", user_id=user["user_id"], dry_run=False)
    assert performed["status"] == "ok" and performed["dry_run"] is False
    assert performed["effects"][0]["performed"] is True
    assert (await stored_user(bastion, user["user_id"]))["app_metadata"] == {"plan": "free", "a": 1}
    execution = (await bastion.management("GET", f"/rules-executions/{performed['execution_id']}")).json()
    assert execution["dry_run"] is False


async def test_try_the_pipeline_runs_the_enabled_rules_in_order(bastion):
    user = await bastion.create_user()
    second = await add_rule(bastion, "second", claim_rule("https://example.com/second", 2), order=20)
    first = await add_rule(bastion, "first", claim_rule("https://example.com/first", 1), order=10)
    off = await add_rule(bastion, "off", claim_rule("https://example.com/off", 0), order=15, enabled=False)

    answer = await try_rules(bastion, user_id=user["user_id"])
    assert [r["name"] for r in answer["records"]] == ["first", "second"]
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/first": 1, "https://example.com/second": 2}

    chosen = await try_rules(bastion, user_id=user["user_id"], rules=[second["id"], off["id"]])
    assert [r["name"] for r in chosen["records"]] == ["off", "second"]
    assert set(chosen["tokens"]["id_token_claims"]) == {"https://example.com/off", "https://example.com/second"}

    unknown = await bastion.management("POST", "/rules/try", json={"user_id": user["user_id"], "rules": [first["id"], "rul_nope"]})
    assert unknown.status_code == 404 and unknown.json() == NO_RULE


async def test_try_with_no_enabled_rules_is_ok_without_execution(bastion):
    answer = await try_rules(bastion, user={})
    assert answer["status"] == "ok" and answer["records"] == [] and answer["execution_id"] is None
    assert answer["dry_run"] is True and answer["effects"] == []
    assert answer["tokens"] == {"id_token_claims": {}, "access_token_claims": {}, "scopes": None, "jti": None}


async def test_try_merges_the_given_context_and_uses_the_given_client(bastion):
    client = await bastion.create_client(name="Shop", client_metadata={"tier": "gold"})
    rule = await add_rule(bastion, "echo", 'def rule(user, context, api):\n'
                          '    context.access_token["https://example.com/seen"] = [context.client_name, context.protocol, context.request.ip]\n'
                          '    context.access_token["scope"] = "openid read:things"\n')
    answer = await try_rules(
        bastion, f"/rules/{rule['id']}/try", user={}, client_id=client["client_id"],
        context={"protocol": "oauth2-resource-owner", "request": {"ip": "198.51.100.9"}},
    )
    assert answer["tokens"]["access_token_claims"] == {"https://example.com/seen": ["Shop", "oauth2-resource-owner", "198.51.100.9"]}
    assert answer["tokens"]["scopes"] == ["openid", "read:things"]
    assert answer["context"]["client_id"] == client["client_id"] and answer["context"]["client_metadata"] == {"tier": "gold"}
    assert answer["context"]["request"]["hostname"]  # merged, not replaced
    execution = (await bastion.management("GET", f"/rules-executions/{answer['execution_id']}")).json()
    assert execution["protocol"] == "oauth2-resource-owner" and execution["client_id"] == client["client_id"]

    missing = await bastion.management("POST", f"/rules/{rule['id']}/try", json={"user": {}, "client_id": "nope"})
    assert_error(missing, 404, "inexistent_client")


async def test_try_reports_reserved_claims_as_warnings(bastion):
    rule = await add_rule(bastion, "reserved", 'def rule(user, context, api):\n    context.id_token["sub"] = "someone else"\n')
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user={})
    assert answer["status"] == "ok" and answer["tokens"]["id_token_claims"] == {}
    assert answer["warnings"] and "sub" in answer["warnings"][0]


async def test_try_needs_exactly_one_user(bastion):
    rule = await add_rule(bastion, "any")
    both = await bastion.management("POST", f"/rules/{rule['id']}/try", json={"user_id": "auth0|x", "user": {}})
    assert_error(both, 400, "invalid_body")
    neither = await bastion.management("POST", f"/rules/{rule['id']}/try", json={})
    assert_error(neither, 400, "invalid_body")
    unknown = await bastion.management("POST", f"/rules/{rule['id']}/try", json={"user_id": "auth0|nobody"})
    assert_error(unknown, 404, "inexistent_user")
    nul = await bastion.management("POST", f"/rules/{rule['id']}/try", json={"user": {"user_id": "auth0|\u0000"}})
    assert_error(nul, 400, "invalid_body")
    for body in [b'{"user_id": "auth0|\\u0000"}', b'{"user": {}, "client_id": "\\u0000"}', b'{"user": {}, "context": {"k": "\\ud800"}}',
                 b'{"user": {}, "rules": ["\\u0000"]}']:
        token = await bastion.management_token()
        response = await bastion.http.post(
            "/api/v2/rules/try", content=body, headers={"Authorization": f"Bearer {token}", "content-type": "application/json"}
        )
        assert re.search("NUL characters|Invalid UTF-8", assert_error(response, 400, "invalid_body")["message"])


async def test_unknown_execution_is_404(bastion):
    response = await bastion.management("GET", "/rules-executions/exe_nope")
    assert_error(response, 404, "inexistent_rules_execution")
    reader = {"Authorization": f"Bearer {await bastion.management_token(scope='read:users')}"}
    assert_error(await bastion.http.get("/api/v2/rules-executions/exe_nope", headers=reader), 403, "insufficient_scope")


async def test_a_login_log_event_links_to_its_execution_record(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, "claims", CLAIM)
    tokens = await bastion.http.post("/oauth/token", data={
        "grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": DEFAULT_CONNECTION,
        "username": "alice@example.com", "password": PASSWORD, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "openid",
    })
    assert tokens.status_code == 200, tokens.text

    logs = (await bastion.management("GET", "/logs", params={"q": "type:sepft"})).json()
    execution_id = logs[0]["details"]["rules_execution_id"]
    execution = await bastion.management("GET", f"/rules-executions/{execution_id}")
    assert execution.status_code == 200
    assert execution.json()["protocol"] == "oauth2-resource-owner" and execution.json()["dry_run"] is False

    # A read:logs token may follow it too.
    reader = {"Authorization": f"Bearer {await bastion.management_token(scope='read:logs')}"}
    assert (await bastion.http.get(f"/api/v2/rules-executions/{execution_id}", headers=reader)).status_code == 200


async def test_trying_is_audited_with_the_execution_id(bastion):
    rule = await add_rule(bastion, "claims", CLAIM)
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user={})
    events = (await bastion.management("GET", "/logs", params={"q": "type:sapi"})).json()
    tried = [e for e in events if e["description"] == "Try rules"]
    assert tried and tried[0]["details"]["rules_execution_id"] == answer["execution_id"]
    assert tried[0]["details"]["rule_id"] == rule["id"]


# -- the CLI -------------------------------------------------------------------


def cli(bastion, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """`bastion *args` on the test app's database and master key."""
    settings = bastion.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update({
        "BASTION_DATABASE_URL": settings.effective_database_url,
        "BASTION_SECRET_KEY": settings.secret_key,
        "BASTION_VAR_DIR": str(settings.var_dir),
        "BASTION_ISSUER": settings.issuer,
    })
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, input=input)


def cli_ok(bastion, *args: str, input: str | None = None) -> str:
    result = cli(bastion, *args, input=input)
    assert result.returncode == 0, f"bastion {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def test_cli_add_list_disable_try_remove(bastion, tmp_path):
    user = await bastion.create_user(app_metadata={"plan": "free"})
    claims = tmp_path / "add_claims.py"
    claims.write_text(CLAIM)
    added = json.loads(cli_ok(bastion, "rules", "add", str(claims), "--order", "3"))
    assert added["name"] == "add-claims" and added["order"] == 3 and added["enabled"] is True
    assert re.fullmatch(r"rul_[A-Za-z0-9]{16}", added["id"])
    stored = (await bastion.management("GET", f"/rules/{added['id']}")).json()
    assert stored["script"] == CLAIM and stored["stage"] == "login_success"

    metadata = tmp_path / "marks.py"
    metadata.write_text(METADATA)
    marks = json.loads(cli_ok(bastion, "rules", "add", str(metadata), "--name", "Marks", "--disabled"))
    assert marks["order"] == 4 and marks["enabled"] is False

    conflict = cli(bastion, "rules", "add", str(metadata), "--name", "other", "--order", "3")
    assert conflict.returncode == 1 and "A rule with the same order already exists" in conflict.stderr

    table = cli_ok(bastion, "rules", "list").splitlines()
    assert table[0].split() == ["ORDER", "ENABLED", "NAME", "ID"]
    assert table[1].split() == ["3", "yes", "add-claims", added["id"]]
    assert table[2].split() == ["4", "no", "Marks", marks["id"]]

    assert "disabled" in cli_ok(bastion, "rules", "disable", added["id"])
    assert (await bastion.management("GET", f"/rules/{added['id']}")).json()["enabled"] is False
    assert "enabled" in cli_ok(bastion, "rules", "enable", added["id"])
    assert cli_ok(bastion, "rules", "list").splitlines()[1].split()[1] == "yes"

    tried = json.loads(cli_ok(bastion, "rules", "try", "--user-id", user["user_id"]))
    assert set(tried) == TRY_KEYS
    assert tried["status"] == "ok" and tried["tokens"]["id_token_claims"] == {"https://example.com/x": 1}
    assert [r["name"] for r in tried["records"]] == ["add-claims"]

    dry = json.loads(cli_ok(bastion, "rules", "try", marks["id"], "--user-id", user["user_id"]))
    assert dry["effects"][0]["performed"] is False
    assert (await stored_user(bastion, user["user_id"]))["app_metadata"] == {"plan": "free"}
    performed = json.loads(cli_ok(bastion, "rules", "try", marks["id"], "--user-id", user["user_id"], "--perform"))
    assert performed["effects"][0]["performed"] is True and performed["dry_run"] is False
    assert (await stored_user(bastion, user["user_id"]))["app_metadata"] == {"plan": "free", "a": 1}

    sample = tmp_path / "user.json"
    sample.write_text(json.dumps({"email": "json@example.com"}))
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"protocol": "samlp"}))
    from_json = json.loads(cli_ok(bastion, "rules", "try", added["id"], "--user-json", str(sample), "--context-json", str(context)))
    assert from_json["user"]["user_id"] == "auth0|try" and from_json["context"]["protocol"] == "samlp"
    assert from_json["tokens"]["id_token_claims"] == {"https://example.com/x": 1}
    execution = (await bastion.management("GET", f"/rules-executions/{from_json['execution_id']}")).json()
    assert execution["protocol"] == "samlp" and execution["user_id"] == "auth0|try"

    usage = cli(bastion, "rules", "try", added["id"])
    assert usage.returncode == 2 and "--user-id" in usage.stderr

    assert added["id"] in cli_ok(bastion, "rules", "remove", added["id"])
    assert (await bastion.management("GET", f"/rules/{added['id']}")).status_code == 404
    gone = cli(bastion, "rules", "remove", added["id"])
    assert gone.returncode == 1 and "The rule does not exist." in gone.stderr


async def test_cli_add_refuses_a_bad_script_naming_its_line(bastion, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import json\nimport subprocess\n\ndef rule(user, context, api):\n    pass\n")
    result = cli(bastion, "rules", "add", str(bad), "--order", "1")
    assert result.returncode == 1
    assert "Invalid script: line 2: import of 'subprocess' is not allowed" in result.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("def rule(user, context, api):\n    if True\n        pass\n")
    result = cli(bastion, "rules", "add", str(broken))
    assert result.returncode == 1 and "line 2: syntax error" in result.stderr
    assert (await bastion.management("GET", "/rules")).json() == []


async def test_cli_rules_config_set_and_remove(bastion, tmp_path):
    assert "API_KEY" in cli_ok(bastion, "rules", "config", "set", "API_KEY", "from-the-cli")
    cli_ok(bastion, "rules", "config", "set", "STDIN_KEY", "-", input="piped-value\n")
    assert (await bastion.management("GET", "/rules-configs")).json() == [{"key": "API_KEY"}, {"key": "STDIN_KEY"}]
    rule = await add_rule(bastion, "configured", 'def rule(user, context, api):\n'
                          '    context.id_token["https://example.com/k"] = [api.configuration["API_KEY"], api.configuration["STDIN_KEY"]]\n')
    answer = await try_rules(bastion, f"/rules/{rule['id']}/try", user={})
    assert answer["tokens"]["id_token_claims"] == {"https://example.com/k": ["from-the-cli", "piped-value"]}

    bad = cli(bastion, "rules", "config", "set", "bad key", "v")
    assert bad.returncode == 1 and "key" in bad.stderr
    cli_ok(bastion, "rules", "config", "remove", "API_KEY")
    assert (await bastion.management("GET", "/rules-configs")).json() == [{"key": "STDIN_KEY"}]
    missing = cli(bastion, "rules", "config", "remove", "API_KEY")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


async def test_cli_logs_lists_events_and_shows_an_execution(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, "claims", CLAIM)
    tokens = await bastion.http.post("/oauth/token", data={
        "grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": DEFAULT_CONNECTION,
        "username": "alice@example.com", "password": PASSWORD, "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "openid",
    })
    assert tokens.status_code == 200, tokens.text

    lines = cli_ok(bastion, "logs", "--limit", "3").splitlines()
    assert len(lines) == 3
    newest = lines[0]
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", newest)
    assert " sepft " in newest and "Password for Access Token" in newest and "alice@example.com" in newest
    execution_id = re.search(r"rules_execution=(exe_[A-Za-z0-9]+)", newest).group(1)
    assert len(cli_ok(bastion, "logs").splitlines()) > 3  # the default limit is 20

    shown = json.loads(cli_ok(bastion, "logs", "--execution", execution_id))
    assert set(shown) == EXECUTION_KEYS
    assert shown["id"] == execution_id and shown["outcome"] == "ok" and shown["protocol"] == "oauth2-resource-owner"
    missing = cli(bastion, "logs", "--execution", "exe_nope")
    assert missing.returncode == 1 and "exe_nope" in missing.stderr
