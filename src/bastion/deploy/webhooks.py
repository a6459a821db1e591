"""Deploy on push: the webhooks of GitHub, GitLab, Bitbucket and Azure DevOps.

    POST /deploy/webhooks/github        X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)
    POST /deploy/webhooks/gitlab        X-Gitlab-Token: the secret
    POST /deploy/webhooks/bitbucket     X-Hub-Signature: sha256=HMAC-SHA256(secret, body)
    POST /deploy/webhooks/azure-devops  Authorization: Basic (BASTION_DEPLOY_WEBHOOK_USERNAME, the secret)

Each request is verified with the provider's own scheme (constant-time comparisons) before
its body is read as JSON. Only a push to the configured repository (BASTION_DEPLOY_REPOSITORY:
exactly the full name the provider documents, e.g. `acme/rules`, or exactly its URL; never a
suffix, so GitLab's `evilgroup/acme/rules` is not `acme/rules`) and branch
(BASTION_DEPLOY_BRANCH) deploys.

Bastion then fetches the configured branch with git from BASTION_DEPLOY_GIT_URL (default: the
repository setting) and deploys only when the pushed commit is the branch's head now: a late
or redelivered older push must never roll the rules back, and the branch, not the payload, is
the truth. A push of the commit the latest deployment already holds, with nothing to change,
records nothing (a provider's redelivery). Values of rules-configs keys come from the
variables BASTION_DEPLOY_ENV_PREFIX + KEY only (values.py). The actor recorded is
`webhook:<provider>:<pusher>`, the pusher as each provider's payload names them.

Answers: 401 when the signature or token is wrong (nothing else is said), 200 with
`{"deployed": false, "reason": ...}` for an event that deploys nothing (GitHub's ping, another
branch, a deleted branch, a commit that is no longer the branch's head, a commit already
deployed), 403 for a push to another repository, 200 `{"deployed": true, "deployment": ...}` or
422 `{"deployed": false, "problems": [...]}` when the bundle is invalid (nothing was changed),
502 when git cannot fetch the branch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.deploy import git, service
from bastion.deploy.errors import DeployError, FetchError, Superseded
from bastion.events import EventType, record_event
from bastion.services import Services
from bastion.web import client_ip, json_response

__all__ = ["PushEvent", "DeployWebhooks", "PROVIDERS", "normalized_repository"]

log = logging.getLogger("bastion.deploy")

MAX_BODY = 5 * 1024 * 1024  # push payloads list commits: larger than the app's default body limit


@dataclass(frozen=True)
class PushEvent:
    """What a provider's push tells: which repository (its full name as the provider documents
    it, and its URLs), branch, commit, and who pushed."""

    provider: str
    repository: str | None
    urls: frozenset[str]
    branch: str | None
    commit: str | None
    pusher: str | None = None

    @property
    def actor(self) -> str:
        """`webhook:<provider>:<pusher>` (printable characters only: it is shown in history and logs)."""
        pusher = "".join(c for c in self.pusher or "" if c.isprintable()).strip()
        return f"webhook:{self.provider}:{pusher}" if pusher else f"webhook:{self.provider}"


class NotAPush(Exception):
    """A verified event that deploys nothing (a ping, a tag, a deleted branch)."""


def _is_url(value: str) -> bool:
    return "://" in value or bool(re.match(r"^[\w.-]+@[\w.-]+:", value))  # scp-like ssh: git@github.com:acme/rules


def normalized_repository(value: str) -> str:
    """A repository's name or URL as compared: lower case (the four providers resolve names
    case-insensitively), without a trailing `/` or `.git`; a URL as host and path, without its
    scheme and credentials (`https://github.com/Acme/Rules.git` and `git@github.com:acme/rules`
    are both `github.com/acme/rules`)."""
    text = value.strip().lower().rstrip("/")
    text = text.removesuffix(".git")
    if "://" in text:
        text = text.split("://", 1)[1]
        text = text.split("@", 1)[-1]  # drop credentials
    elif _is_url(text):
        text = text.split("@", 1)[1].replace(":", "/", 1)
    return text


def _matches(configured: str, push: PushEvent) -> bool:
    """Exactly the configured repository: its full name against the payload's full name, or its
    URL against the payload's URLs. Never a suffix: GitLab's `evilgroup/acme/rules` (anyone
    may create a group holding an `acme/rules`) is not `acme/rules`."""
    wanted = normalized_repository(configured)
    if _is_url(configured.strip()):
        return any(normalized_repository(url) == wanted for url in push.urls)
    return push.repository is not None and normalized_repository(push.repository) == wanted


def _branch_of(ref: str | None) -> str | None:
    if ref and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None


def _names(*values: Any) -> frozenset[str]:
    return frozenset(v for v in values if isinstance(v, str) and v)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- verification, one per provider ----------------------------------------------------


def _hmac_sha256_header(header: str | None, secret: str, body: bytes) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.removeprefix("sha256=").strip().lower(), expected)


def verify_github(headers, body: bytes, secret: str, _username: str) -> bool:
    return _hmac_sha256_header(headers.get("x-hub-signature-256"), secret, body)


def verify_gitlab(headers, body: bytes, secret: str, _username: str) -> bool:
    token = headers.get("x-gitlab-token") or ""
    return hmac.compare_digest(token.encode(), secret.encode())


def verify_bitbucket(headers, body: bytes, secret: str, _username: str) -> bool:
    return _hmac_sha256_header(headers.get("x-hub-signature"), secret, body)


def verify_azure_devops(headers, body: bytes, secret: str, username: str) -> bool:
    scheme, _, encoded = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    same_user = hmac.compare_digest(given_user.encode(), username.encode())
    same_password = hmac.compare_digest(given_password.encode(), secret.encode())
    return same_user and same_password


# -- payloads, one per provider ------------------------------------------------------------


def parse_github(headers, payload: dict) -> PushEvent:
    event = headers.get("x-github-event")
    if event != "push":
        raise NotAPush(f"GitHub event {event!r} is not a push")
    if payload.get("deleted"):
        raise NotAPush("the branch was deleted")
    repository = payload.get("repository") or {}
    return PushEvent(
        provider="github", branch=_branch_of(payload.get("ref")), commit=_text(payload.get("after")),
        repository=_text(repository.get("full_name")),
        urls=_names(repository.get("clone_url"), repository.get("html_url"), repository.get("ssh_url"),
                    repository.get("git_url")),
        pusher=_text((payload.get("pusher") or {}).get("name")),
    )


def parse_gitlab(headers, payload: dict) -> PushEvent:
    if payload.get("object_kind") != "push":
        raise NotAPush(f"GitLab event {payload.get('object_kind')!r} is not a push")
    commit = _text(payload.get("checkout_sha"))
    if not commit:
        raise NotAPush("the branch was deleted")
    project = payload.get("project") or {}
    repository = payload.get("repository") or {}
    return PushEvent(
        provider="gitlab", branch=_branch_of(payload.get("ref")), commit=commit,
        repository=_text(project.get("path_with_namespace")),
        urls=_names(project.get("git_http_url"), project.get("git_ssh_url"), project.get("web_url"),
                    repository.get("git_http_url"), repository.get("homepage")),
        pusher=_text(payload.get("user_username")),
    )


def parse_bitbucket(headers, payload: dict) -> PushEvent:
    if headers.get("x-event-key") != "repo:push":
        raise NotAPush(f"Bitbucket event {headers.get('x-event-key')!r} is not a push")
    branches = [c.get("new") for c in (payload.get("push") or {}).get("changes") or []
                if isinstance(c.get("new"), dict) and c["new"].get("type") == "branch"]
    if not branches:
        raise NotAPush("the push changed no branch (a tag, or a deleted branch)")
    latest = branches[-1]
    repository = payload.get("repository") or {}
    links = repository.get("links") or {}
    actor = payload.get("actor") or {}
    return PushEvent(
        provider="bitbucket", branch=latest.get("name"), commit=_text((latest.get("target") or {}).get("hash")),
        repository=_text(repository.get("full_name")), urls=_names((links.get("html") or {}).get("href")),
        pusher=_text(actor.get("nickname")) or _text(actor.get("display_name")),
    )


def parse_azure_devops(headers, payload: dict) -> PushEvent:
    if payload.get("eventType") != "git.push":
        raise NotAPush(f"Azure DevOps event {payload.get('eventType')!r} is not a push")
    resource = payload.get("resource") or {}
    updates = [u for u in resource.get("refUpdates") or [] if _branch_of(u.get("name"))]
    if not updates or set(updates[-1].get("newObjectId") or "0") == {"0"}:
        raise NotAPush("the push changed no branch (or deleted it)")
    repository = resource.get("repository") or {}
    project = (repository.get("project") or {}).get("name")
    name = repository.get("name")
    return PushEvent(
        provider="azure-devops", branch=_branch_of(updates[-1].get("name")), commit=_text(updates[-1].get("newObjectId")),
        repository=f"{project}/{name}" if isinstance(project, str) and project and isinstance(name, str) and name else None,
        urls=_names(repository.get("remoteUrl"), repository.get("webUrl")),
        pusher=_text((resource.get("pushedBy") or {}).get("uniqueName")),
    )


Verifier = Callable[[Any, bytes, str, str], bool]
Parser = Callable[[Any, dict], PushEvent]
PROVIDERS: dict[str, tuple[Verifier, Parser]] = {
    "github": (verify_github, parse_github),
    "gitlab": (verify_gitlab, parse_gitlab),
    "bitbucket": (verify_bitbucket, parse_bitbucket),
    "azure-devops": (verify_azure_devops, parse_azure_devops),
}


# -- the route ------------------------------------------------------------------------------


class DeployWebhooks:
    def __init__(self, services: Services):
        self.services = services

    def routes(self) -> list[Route]:
        return [Route("/deploy/webhooks/{provider}", self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        settings = self.services.settings
        provider = request.path_params["provider"]
        if provider not in PROVIDERS:
            return json_response({"error": "not_found", "error_description": "Unknown provider"}, 404)
        if not settings.deploy_webhook_secret or not settings.deploy_repository:
            return json_response({"error": "not_configured", "error_description":
                                  "Deploy webhooks need BASTION_DEPLOY_REPOSITORY and BASTION_DEPLOY_WEBHOOK_SECRET"}, 404)
        body = await _body(request)
        if body is None:
            return json_response({"error": "invalid_request", "error_description": "The payload is too large"}, 413)
        verify, parse = PROVIDERS[provider]
        if not verify(request.headers, body, settings.deploy_webhook_secret, settings.deploy_webhook_username):
            log.warning("a %s deploy webhook failed verification (from %s)", provider, client_ip(request))
            return json_response({"error": "unauthorized", "error_description": "Invalid signature"}, 401)
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError
            push = parse(request.headers, payload)
        except NotAPush as ignored:
            return json_response({"deployed": False, "reason": str(ignored)})
        except (ValueError, AttributeError, TypeError):
            return json_response({"error": "invalid_request", "error_description": "The payload is not a push event"}, 400)
        if not _matches(settings.deploy_repository, push):
            return json_response({"error": "forbidden", "error_description": "This repository is not the one configured"}, 403)
        if push.branch != settings.deploy_branch or not push.commit:
            return json_response({"deployed": False, "reason": f"a push to {push.branch!r}, not {settings.deploy_branch!r}"})
        return await self._deploy(request, push)

    async def _deploy(self, request: Request, push: PushEvent) -> Response:
        """Fetch the branch; deploy it only when its head is the pushed commit."""
        settings = self.services.settings
        url = settings.deploy_git_url or settings.deploy_repository
        try:
            async with git.fetch(url, f"refs/heads/{settings.deploy_branch}", timeout=settings.deploy_git_timeout) as fetched:
                if fetched.commit != push.commit.strip().lower():
                    reason = (f"commit {push.commit} is not the head of {settings.deploy_branch} now ({fetched.commit}): "
                              "only the head deploys (a late or redelivered push)")
                    log.warning("a %s push: %r", push.provider, reason)
                    return json_response({"deployed": False, "commit": push.commit, "reason": reason})
                bundle = service.load_bundle(fetched.path / settings.deploy_path if settings.deploy_path else fetched.path)

                async def still_the_head() -> str | None:
                    # Asked again under the deploy lock: a newer push may have been applied while this
                    # one was fetched, and the older must not overwrite it.
                    head = await git.remote_head(url, f"refs/heads/{settings.deploy_branch}", timeout=settings.deploy_git_timeout)
                    if head != fetched.commit:
                        return f"commit {fetched.commit} is no longer the head of {settings.deploy_branch} ({head}): a newer push deploys"
                    return None

                deployment = await service.apply(
                    self.services, bundle, actor=push.actor, source=url, ref=push.branch, commit=fetched.commit,
                    path=settings.deploy_path or None, env_prefix=settings.deploy_env_prefix, skip_if_deployed=True,
                    still_current=still_the_head,
                )
        except Superseded as superseded:
            log.warning("a %s push: %s", push.provider, superseded)
            return json_response({"deployed": False, "commit": push.commit, "reason": str(superseded)})
        except FetchError as error:
            await self._failed(request, push, problems=list(error.problems))
            return json_response({"deployed": False, "commit": push.commit, "problems": list(error.problems)}, 502)
        except DeployError as error:  # an invalid bundle or plan: nothing was changed
            await self._failed(request, push, problems=list(error.problems))
            return json_response({"deployed": False, "commit": push.commit, "problems": list(error.problems)}, 422)
        if deployment is None:
            log.info("a %s push of %r: already deployed, nothing to change", push.provider, push.commit)
            return json_response({"deployed": False, "commit": push.commit, "reason": "already deployed"})
        return json_response({"deployed": True, "commit": deployment.commit, "deployment": deployment.id})

    async def _failed(self, request: Request, push: PushEvent, *, problems: list[str]) -> None:
        async with self.services.database.transaction() as session:
            await record_event(
                session, EventType.FAILED_API_OPERATION, description=f"Deploy rules from a {push.provider} push failed",
                ip=client_ip(request), details={"provider": push.provider, "branch": push.branch, "commit": push.commit,
                                                "problems": problems[:20]},
            )


async def _body(request: Request) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
