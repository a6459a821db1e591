"""Deploy on push: each provider's webhook, verified with its own scheme, deploys the pushed
commit of the configured repository and branch, fetched with git from a local bare repository.
The payloads are shaped as each provider documents its push event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest

from bastion.deploy import service
from bastion.storage import rules as rule_store

SECRET = "webhook-secret-0123456789"
REPOSITORY = "acme/rules"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


class Repository:
    """A bare repository (the provider's) and a work tree pushing to it."""

    def __init__(self, root: Path):
        self.bare = root / "rules.git"
        self.work = root / "work"
        self.bare.mkdir(parents=True)
        git(self.bare, "init", "--bare", "--initial-branch=main")
        self.work.mkdir()
        git(self.work, "init", "--initial-branch=main")
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str | None], message: str = "rules", branch: str = "main") -> str:
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:{branch}")
        return git(self.work, "rev-parse", "HEAD")


def claim_rule(value: str) -> str:
    return f'def rule(user, context, api):\n    context.id_token["https://example.com/v"] = "{value}"\n'


# -- the providers' push events ------------------------------------------------------------


def github(commit: str, branch: str = "main", repository: str = REPOSITORY) -> tuple[dict, dict]:
    payload = {"ref": f"refs/heads/{branch}", "before": "0" * 40, "after": commit, "deleted": False,
               "repository": {"full_name": repository, "clone_url": f"https://github.com/{repository}.git",
                              "html_url": f"https://github.com/{repository}"},
               "pusher": {"name": "alice"}, "head_commit": {"id": commit, "message": "rules"}}
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": signature, "X-GitHub-Delivery": "1"}, body


def gitlab(commit: str, branch: str = "main", token: str = SECRET, repository: str = REPOSITORY) -> tuple[dict, dict]:
    payload = {"object_kind": "push", "event_name": "push", "ref": f"refs/heads/{branch}", "checkout_sha": commit,
               "after": commit, "user_username": "bob", "user_name": "Bob",
               "project": {"path_with_namespace": repository, "git_http_url": f"https://gitlab.com/{repository}.git",
                           "web_url": f"https://gitlab.com/{repository}"}}
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}, json.dumps(payload).encode()


def bitbucket(commit: str, branch: str = "main") -> tuple[dict, dict]:
    payload = {"push": {"changes": [{"new": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": commit}},
                                     "old": None, "created": True, "closed": False}]},
               "repository": {"full_name": REPOSITORY, "type": "repository",
                              "links": {"html": {"href": f"https://bitbucket.org/{REPOSITORY}"}}},
               "actor": {"type": "user", "display_name": "Carol C", "nickname": "carol"}}
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Event-Key": "repo:push", "X-Hub-Signature": signature}, body


def azure_devops(commit: str, branch: str = "main", password: str = SECRET) -> tuple[dict, dict]:
    payload = {"eventType": "git.push", "publisherId": "tfs",
               "resource": {"refUpdates": [{"name": f"refs/heads/{branch}", "oldObjectId": "0" * 40, "newObjectId": commit}],
                            "repository": {"name": "rules", "project": {"name": "acme"},
                                           "remoteUrl": "https://dev.azure.com/org/acme/_git/rules"},
                            "pushedBy": {"displayName": "Dave", "uniqueName": "dave@example.com"}}}
    credentials = base64.b64encode(f"bastion:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}, json.dumps(payload).encode()


PUSHES = {"github": github, "gitlab": gitlab, "bitbucket": bitbucket, "azure-devops": azure_devops}
PUSHERS = {"github": "alice", "gitlab": "bob", "bitbucket": "carol", "azure-devops": "dave@example.com"}


@pytest.fixture
def repository(tmp_path):
    return Repository(tmp_path / "remote")


@pytest.fixture
async def app(bastion_with, repository):
    async with bastion_with(deploy_repository=REPOSITORY, deploy_git_url=str(repository.bare), deploy_branch="main",
                            deploy_webhook_secret=SECRET, deploy_path="bastion") as bastion:
        yield bastion


async def deployed_scripts(app) -> dict[str, str]:
    async with app.services.database.reader() as session:
        return {r.name: r.script for r in (await rule_store.list_rules(session, page=0, per_page=100)).items}


async def post(app, provider: str, headers: dict, body: bytes):
    return await app.http.post(f"/deploy/webhooks/{provider}", content=body, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("provider", sorted(PUSHES))
async def test_a_verified_push_deploys_the_pushed_commit(app, repository, provider):
    first = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    response = await post(app, provider, *PUSHES[provider](first))
    assert response.status_code == 200, response.text
    assert response.json()["deployed"] is True and response.json()["commit"] == first
    assert await deployed_scripts(app) == {"tag-tokens": claim_rule("one")}

    second = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("two")})
    assert (await post(app, provider, *PUSHES[provider](second))).json()["deployed"] is True
    assert await deployed_scripts(app) == {"tag-tokens": claim_rule("two")}
    # The actor names the pusher as the provider's payload does.
    assert [d.actor for d in await service.history(app.services)] == [f"webhook:{provider}:{PUSHERS[provider]}"] * 2

    # A login runs what was deployed.
    client = await app.create_client()
    await app.create_user()
    tokens = await app.code_tokens(client)
    claims = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[1] + "=="))
    assert claims["https://example.com/v"] == "two"

    logs = (await app.management("GET", "/logs", params={"q": "type:sapi"})).json()
    assert any(second in json.dumps(event) for event in logs)


async def test_wrong_signatures_and_tokens_are_refused_and_change_nothing(app, repository):
    commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    headers, body = github(commit)
    tampered = body.replace(b"acme/rules", b"acme/ruleZ")
    assert (await post(app, "github", headers, tampered)).status_code == 401
    assert (await post(app, "github", {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}, body)).status_code == 401
    assert (await post(app, "github", {"X-GitHub-Event": "push"}, body)).status_code == 401
    assert (await post(app, "gitlab", *gitlab(commit, token="not-the-token"))).status_code == 401
    headers, body = bitbucket(commit)
    assert (await post(app, "bitbucket", headers, body + b" ")).status_code == 401
    assert (await post(app, "azure-devops", *azure_devops(commit, password="wrong"))).status_code == 401
    assert (await post(app, "azure-devops", {"Authorization": "Basic !!!"}, b"{}")).status_code == 401
    assert (await post(app, "sourcehut", {}, b"{}")).status_code == 404
    assert await deployed_scripts(app) == {}


async def test_only_the_configured_repository_and_branch_deploy(app, repository):
    commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("feature")}, branch="feature")
    other_branch = await post(app, "github", *github(commit, branch="feature"))
    assert other_branch.status_code == 200 and other_branch.json()["deployed"] is False
    other_repository = await post(app, "github", *github(commit, repository="mallory/rules"))
    assert other_repository.status_code == 403
    ping_body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    ping = await post(app, "github", {"X-GitHub-Event": "ping",
                                      "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), ping_body, hashlib.sha256).hexdigest()},
                      ping_body)
    assert ping.status_code == 200 and ping.json()["deployed"] is False
    assert await deployed_scripts(app) == {}


async def test_an_invalid_bundle_changes_nothing_and_is_logged(app, repository):
    good = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    assert (await post(app, "gitlab", *gitlab(good))).json()["deployed"] is True
    bad = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("two"), "bastion/rules/broken.py": "import os\ndef rule(user, context, api):\n    pass\n"})
    response = await post(app, "gitlab", *gitlab(bad))
    assert response.status_code == 422, response.text
    assert response.json()["deployed"] is False and any("broken" in p for p in response.json()["problems"])
    assert await deployed_scripts(app) == {"tag-tokens": claim_rule("one")}
    [failure] = (await app.management("GET", "/logs", params={"q": "type:fapi"})).json()
    assert failure["details"]["commit"] == bad and failure["details"]["problems"]


async def test_a_repository_git_cannot_fetch_is_a_bad_gateway(bastion_with, tmp_path):
    async with bastion_with(deploy_repository=REPOSITORY, deploy_git_url=str(tmp_path / "nowhere.git"),
                            deploy_webhook_secret=SECRET) as app:
        response = await post(app, "bitbucket", *bitbucket("f" * 40))
        assert response.status_code == 502 and response.json()["deployed"] is False
        assert "git fetch" in response.json()["problems"][0]
        assert await deployed_scripts(app) == {}


async def test_only_the_branch_head_deploys_and_a_redelivery_records_nothing(app, repository):
    first = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    first_push = github(first)
    assert (await post(app, "github", *first_push)).json()["deployed"] is True
    second = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("two")})
    second_push = github(second)
    assert (await post(app, "github", *second_push)).json()["deployed"] is True

    # The first push delivered again (late, or replayed): the rules stay at the branch's head.
    replayed = await post(app, "github", *first_push)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["deployed"] is False and "not the head of main" in replayed.json()["reason"]
    assert await deployed_scripts(app) == {"tag-tokens": claim_rule("two")}
    # A commit the branch never had deploys nothing either.
    unknown = await post(app, "github", *github("f" * 40))
    assert unknown.status_code == 200 and unknown.json()["deployed"] is False

    # The head's push delivered again: nothing to change, nothing recorded.
    again = await post(app, "github", *second_push)
    assert again.status_code == 200 and again.json() == {"deployed": False, "commit": second, "reason": "already deployed"}
    assert len(await service.history(app.services)) == 2

    # Once the rules were changed by hand, the same delivery deploys the head again.
    [rule] = (await app.management("GET", "/rules")).json()
    assert (await app.management("PATCH", f"/rules/{rule['id']}", json={"enabled": False})).status_code == 200
    redeployed = await post(app, "github", *second_push)
    assert redeployed.json()["deployed"] is True
    assert len(await service.history(app.services)) == 3
    assert [r["enabled"] for r in (await app.management("GET", "/rules")).json()] == [True]


async def test_an_older_push_whose_fetch_finishes_last_does_not_overwrite_a_newer_one(app, repository, monkeypatch):
    older = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("older")})
    load_bundle = service.load_bundle

    def newer_push_lands_meanwhile(path):
        # Between the older push's fetch and its apply, a newer commit is pushed and deployed.
        monkeypatch.setattr(service, "load_bundle", load_bundle)
        newer = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("newer")})
        newer_deployed.append(newer)
        return load_bundle(path)

    newer_deployed: list[str] = []
    monkeypatch.setattr(service, "load_bundle", newer_push_lands_meanwhile)
    answer = await post(app, "github", *github(older))
    assert answer.status_code == 200 and answer.json()["deployed"] is False, answer.text
    assert "no longer the head of main" in answer.json()["reason"]
    assert await deployed_scripts(app) == {} and await service.history(app.services) == []

    newer = await post(app, "github", *github(newer_deployed[0]))
    assert newer.json()["deployed"] is True and await deployed_scripts(app) == {"tag-tokens": claim_rule("newer")}


async def test_a_gitlab_subgroup_ending_like_the_repository_is_another_repository(app, repository):
    commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    response = await post(app, "gitlab", *gitlab(commit, repository="evilgroup/acme/rules"))
    assert response.status_code == 403, response.text
    # Names compare as the providers resolve them: case-insensitively, but whole.
    assert (await post(app, "gitlab", *gitlab(commit, repository="acme/rules-old"))).status_code == 403
    assert (await post(app, "gitlab", *gitlab(commit, repository="Acme/Rules"))).json()["deployed"] is True


async def test_a_configured_url_matches_the_payloads_url_exactly(bastion_with, repository):
    async with bastion_with(deploy_repository="https://gitlab.com/acme/rules.git", deploy_git_url=str(repository.bare),
                            deploy_webhook_secret=SECRET, deploy_path="bastion") as app:
        commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
        assert (await post(app, "gitlab", *gitlab(commit, repository="evilgroup/acme/rules"))).status_code == 403
        assert (await post(app, "gitlab", *gitlab(commit))).json()["deployed"] is True


async def test_a_push_never_reads_a_server_setting_into_rules_configuration(app, repository, monkeypatch):
    monkeypatch.setenv("BASTION_SECRET_KEY", "the-servers-master-key-0123456789")
    monkeypatch.setenv("BASTION_RULES_CONFIG_BASTION_SECRET_KEY", "the-servers-master-key-0123456789")
    commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one"),
                                "bastion/rules-configs/BASTION_SECRET_KEY.json": "{}"})
    response = await post(app, "github", *github(commit))
    assert response.status_code == 422, response.text
    assert any("BASTION_SECRET_KEY" in problem and "refused" in problem for problem in response.json()["problems"])
    assert await deployed_scripts(app) == {}
    assert await app.services.tenant.rule_configuration() == {}
    assert await service.history(app.services) == []


async def test_a_push_reads_values_under_the_webhook_prefix_only(app, repository, monkeypatch):
    monkeypatch.setenv("TAG", "unprefixed: never read by a webhook")
    commit = repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one"), "bastion/rules-configs/TAG.json": "{}"})
    refused = await post(app, "github", *github(commit))
    assert refused.status_code == 422 and "BASTION_RULES_CONFIG_TAG" in refused.json()["problems"][0]

    monkeypatch.setenv("BASTION_RULES_CONFIG_TAG", "from-the-prefixed-variable")
    assert (await post(app, "github", *github(commit))).json()["deployed"] is True
    assert await app.services.tenant.rule_configuration() == {"TAG": "from-the-prefixed-variable"}


async def test_webhooks_are_off_until_configured(bastion):
    response = await bastion.http.post("/deploy/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "push"})
    assert response.status_code == 404
