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


def gitlab(commit: str, branch: str = "main", token: str = SECRET) -> tuple[dict, dict]:
    payload = {"object_kind": "push", "event_name": "push", "ref": f"refs/heads/{branch}", "checkout_sha": commit,
               "after": commit, "project": {"path_with_namespace": REPOSITORY, "git_http_url": f"https://gitlab.com/{REPOSITORY}.git",
                                            "web_url": f"https://gitlab.com/{REPOSITORY}"}}
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}, json.dumps(payload).encode()


def bitbucket(commit: str, branch: str = "main") -> tuple[dict, dict]:
    payload = {"push": {"changes": [{"new": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": commit}},
                                     "old": None, "created": True, "closed": False}]},
               "repository": {"full_name": REPOSITORY, "type": "repository",
                              "links": {"html": {"href": f"https://bitbucket.org/{REPOSITORY}"}}}}
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Event-Key": "repo:push", "X-Hub-Signature": signature}, body


def azure_devops(commit: str, branch: str = "main", password: str = SECRET) -> tuple[dict, dict]:
    payload = {"eventType": "git.push", "publisherId": "tfs",
               "resource": {"refUpdates": [{"name": f"refs/heads/{branch}", "oldObjectId": "0" * 40, "newObjectId": commit}],
                            "repository": {"name": "rules", "project": {"name": "acme"},
                                           "remoteUrl": "https://dev.azure.com/org/acme/_git/rules"}}}
    credentials = base64.b64encode(f"bastion:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}, json.dumps(payload).encode()


PUSHES = {"github": github, "gitlab": gitlab, "bitbucket": bitbucket, "azure-devops": azure_devops}


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


async def test_a_commit_git_cannot_fetch_is_a_bad_gateway(app, repository):
    repository.commit({"bastion/rules/tag-tokens.py": claim_rule("one")})
    response = await post(app, "bitbucket", *bitbucket("f" * 40))
    assert response.status_code == 502 and response.json()["deployed"] is False
    assert await deployed_scripts(app) == {}


async def test_webhooks_are_off_until_configured(bastion):
    response = await bastion.http.post("/deploy/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "push"})
    assert response.status_code == 404
