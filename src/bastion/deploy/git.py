"""Fetching one commit of a git repository into a temporary folder, with the git command line
(never a shell), under one deadline:

    git init
    git fetch --depth 1 -- URL REF        REF: a branch, a tag or a full commit sha; default HEAD
    git checkout --detach FETCH_HEAD
    git rev-parse HEAD                    the commit a deployment records

    async with fetch(url, ref, timeout=60) as source:     # or: source = await fetch(...)
        bundle = load_bundle(source.path)     # source.commit: the sha

Only the https, http, ssh, git and file transports are allowed (not `ext::`, which runs commands);
git never prompts for credentials (put them in the URL, a credential helper or an SSH agent).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bastion.deploy.errors import FetchError

__all__ = ["FetchedSource", "FetchError", "fetch", "remote_head", "display_url", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 120.0
ALLOWED_TRANSPORTS = ("https", "http", "ssh", "git", "file")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass
class FetchedSource:
    """A checked-out commit in a temporary folder, removed by `cleanup()` or at the end of a
    `with` / `async with` block."""

    url: str
    ref: str | None
    commit: str
    path: Path
    _temporary: Path

    def cleanup(self) -> None:
        shutil.rmtree(self._temporary, ignore_errors=True)

    def __enter__(self) -> FetchedSource:
        return self

    def __exit__(self, *_exc) -> None:
        self.cleanup()

    async def __aenter__(self) -> FetchedSource:
        return self

    async def __aexit__(self, *_exc) -> None:
        self.cleanup()


def display_url(url: str) -> str:
    """`url` without a password or token in it (what messages and deployments show)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class _Fetch:
    """`fetch(...)`: awaited, the FetchedSource; used in `async with`, the FetchedSource
    removed at the end of the block."""

    def __init__(self, url: str, ref: str | None, timeout: float):
        self._arguments = (url, ref, timeout)
        self._source: FetchedSource | None = None

    def __await__(self):
        return _fetch(*self._arguments).__await__()

    async def __aenter__(self) -> FetchedSource:
        self._source = await _fetch(*self._arguments)
        return self._source

    async def __aexit__(self, *_exc) -> None:
        if self._source is not None:
            self._source.cleanup()


def fetch(url: str, ref: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> _Fetch:
    """Check out `ref` (default: the remote's HEAD) of the repository at `url` (a URL or a local
    path) into a new temporary folder: `source = await fetch(...)` (then `source.cleanup()`, or
    `with source:`), or `async with fetch(...) as source:`. Raises FetchError (the temporary
    folder is then gone already)."""
    return _Fetch(url, ref, timeout)


async def _fetch(url: str, ref: str | None, timeout: float) -> FetchedSource:
    if not url or url.startswith("-"):
        raise FetchError(f"not a git repository URL: {url!r}")
    if ref is not None and (not ref or ref.startswith("-") or any(c.isspace() for c in ref)):
        raise FetchError(f"not a branch, tag or commit: {ref!r}")
    deadline = time.monotonic() + timeout
    temporary = Path(tempfile.mkdtemp(prefix="bastion-deploy-"))
    checkout = temporary / "checkout"
    checkout.mkdir()
    try:
        await _git(["init", "--quiet"], checkout, deadline, timeout)
        await _git(["fetch", "--quiet", "--depth", "1", "--", url, ref or "HEAD"], checkout, deadline, timeout, url=url)
        await _git(["checkout", "--quiet", "--detach", "FETCH_HEAD"], checkout, deadline, timeout)
        commit = (await _git(["rev-parse", "HEAD"], checkout, deadline, timeout)).strip()
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if ref is not None and _SHA.match(ref.lower()) and commit != ref.lower():
        shutil.rmtree(temporary, ignore_errors=True)
        raise FetchError(f"fetched commit {commit}, not {ref}")
    return FetchedSource(url=url, ref=ref, commit=commit, path=checkout, _temporary=temporary)


async def remote_head(url: str, ref: str, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The commit `ref` (e.g. `refs/heads/main`) names at `url` now (`git ls-remote`), without
    fetching anything; None when the remote has no such ref. Raises FetchError."""
    if not url or url.startswith("-") or not ref or ref.startswith("-"):
        raise FetchError(f"not a git repository URL and ref: {url!r} {ref!r}")
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="bastion-deploy-") as folder:
        listing = await _git(["ls-remote", "--", url, ref], Path(folder), deadline, timeout, url=url)
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            return sha.strip().lower()
    return None


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    environment.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return environment


def _transport_options() -> list[str]:
    options = ["-c", "protocol.allow=never"]
    for transport in ALLOWED_TRANSPORTS:
        options += ["-c", f"protocol.{transport}.allow=always"]
    return options


async def _git(arguments: list[str], folder: Path, deadline: float, timeout: float, *, url: str | None = None) -> str:
    command = f"git {arguments[0]}"
    try:
        process = await asyncio.create_subprocess_exec(
            "git", *_transport_options(), *arguments, cwd=folder, env=_environment(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise FetchError("git is not installed (the git command was not found)") from None
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise FetchError(f"{command} did not finish within {timeout:g} s") from None
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"exit status {process.returncode}"
        if url:
            detail = detail.replace(url, display_url(url))
            raise FetchError(f"{command} {display_url(url)} failed: {detail}")
        raise FetchError(f"{command} failed: {detail}")
    return out.decode(errors="replace")
