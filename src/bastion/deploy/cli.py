"""`bastion deploy`: rules as code from a folder or a git repository (docs/deploy.md). A thin
layer over deploy/service.py: it finds the bundle, prints plans and reports, and turns every
DeployError into a message and a non-zero exit status (never a stack trace).

    bastion deploy SOURCE [--ref REF] [--path DIR] [--plan] [--env-prefix P]
    bastion deploy history | rollback [ID] [--plan] | status [--exit-code] | manual add|remove|list
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar

import click

from bastion.deploy.errors import BundleError, DeployError

__all__ = ["deploy_group"]

T = TypeVar("T")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:org/rules.git


class _DeployGroup(click.Group):
    """`bastion deploy SOURCE ...` is `bastion deploy apply SOURCE ...`: anything that is not a
    sub-command's name is a source (a folder named like one: `./history`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["apply", *args]
        return super().parse_args(ctx, args)


@click.group("deploy", cls=_DeployGroup)
def deploy_group() -> None:
    """Deploy rules from a folder or a git repository: plan, apply, history, rollback, drift status.

    \b
    bastion deploy ./tenant --plan
    bastion deploy https://github.com/org/rules.git --ref v1.2 --path tenant
    """


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def _run(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(services)` as the other commands do; a DeployError becomes the command's error."""
    from bastion.cli import _run as run_with_services

    async def guarded(services) -> T:
        try:
            return await work(services)
        except BundleError as error:
            raise click.ClickException(_problems("the bundle is not valid; nothing was changed:", error.problems)) from None
        except DeployError as error:
            raise click.ClickException(_problems("nothing was changed:", error.problems)) from None

    return run_with_services(guarded)


def _problems(heading: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{heading} {problems[0]}"
    return "\n".join([heading, *(f"  {problem}" for problem in problems)])


def _is_git_source(source: str, ref: str | None) -> bool:
    """A URL, `user@host:path`, any source given a --ref, or a bare repository; else a folder."""
    if "://" in source or _SCP_LIKE.match(source) or ref is not None:
        return True
    folder = Path(source)
    if not folder.is_dir():
        raise click.ClickException(f"{source}: no such folder (a git source is a URL, or a path with --ref)")
    return (folder / "HEAD").is_file() and (folder / "objects").is_dir() and not (folder / "rules").exists()


@deploy_group.command("apply")
@click.argument("source")
@click.option("--ref", default=None, help="Branch, tag or full commit sha of a git source (default: the remote's HEAD).")
@click.option("--path", "subfolder", default=None, help="The bundle's folder inside the source (Auth0's BASE_DIR).")
@click.option("--plan", "plan_only", is_flag=True, help="Print what would change, change nothing.")
@click.option("--env-prefix", default="", help="Read the value of configuration KEY from the variable PREFIX+KEY.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(1, 3600), help="Seconds allowed for the git fetch.")
def deploy_apply(source: str, ref: str | None, subfolder: str | None, plan_only: bool, env_prefix: str, timeout: float) -> None:
    """Deploy the rules of SOURCE, a folder or a git repository, in one transaction."""
    from bastion.deploy import service
    from bastion.deploy.bundle import bundle_folder, load_bundle
    from bastion.deploy.git import fetch
    from bastion.deploy.plan import render_plan

    use_git = _is_git_source(source, ref)

    async def work(services):
        async with AsyncExitStack() as stack:
            if use_git:
                fetched = await stack.enter_async_context(fetch(source, ref, timeout=timeout))
                root, commit, shown = fetched.path, fetched.commit, source
            else:
                root, commit, shown = Path(source), None, str(Path(source).resolve())
            bundle = load_bundle(bundle_folder(root, subfolder))
        planned = await service.plan(services, bundle, source=shown, env_prefix=env_prefix)
        click.echo(render_plan(planned))
        if planned.errors:
            raise DeployError(f"the plan has {len(planned.errors)} error(s), listed above")
        if plan_only:
            return
        deployment = await service.apply(services, bundle, actor=_actor(), source=shown, ref=ref, commit=commit,
                                         path=subfolder, env_prefix=env_prefix)
        click.echo(f"deployed: {deployment.id}" + (f" (commit {commit})" if commit else ""))

    _run(work)


@deploy_group.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def deploy_history(limit: int) -> None:
    """Deployments, newest first: id, date, actor, source and commit, what changed."""
    from bastion.deploy import service

    async def work(services):
        return await service.history(services, limit=limit)

    found = _run(work)
    if not found:
        click.echo("no deployments")
    for deployment in found:
        click.echo(_history_line(deployment))


def _history_line(deployment) -> str:
    origin = deployment.source
    if deployment.ref:
        origin += f" ref {deployment.ref}"
    if deployment.commit:
        origin += f" @ {deployment.commit[:12]}"
    if deployment.path:
        origin += f" path {deployment.path}"
    summary = deployment.summary
    counts = " ".join(f"{sign}{len(summary.get(kind, []))}" for sign, kind in
                      (("+", "added"), ("~", "changed"), ("^", "reordered"), ("-", "removed")))
    line = f"{deployment.id}  {deployment.created_at:%Y-%m-%d %H:%M:%S}Z  {deployment.actor}  {origin}  {counts}"
    if deployment.rollback_of:
        line += f"  (rollback to {deployment.rollback_of})"
    return line


@deploy_group.command("rollback")
@click.argument("deployment_id", required=False)
@click.option("--plan", "plan_only", is_flag=True, help="Print what would change, change nothing.")
def deploy_rollback(deployment_id: str | None, plan_only: bool) -> None:
    """Restore the rules of deployment DEPLOYMENT_ID exactly (default: the one before the latest)."""
    from bastion.deploy import service
    from bastion.deploy.plan import render_plan

    async def work(services):
        planned = await service.plan_rollback(services, deployment_id)
        click.echo(render_plan(planned))
        if planned.errors:
            raise DeployError(f"the rollback has {len(planned.errors)} error(s), listed above")
        if plan_only:
            return
        deployment = await service.rollback(services, deployment_id, actor=_actor())
        click.echo(f"rolled back: {deployment.id} restores {deployment.rollback_of}")

    _run(work)


@deploy_group.command("status")
@click.option("--exit-code", is_flag=True, help="Exit with status 1 when the rules drifted.")
def deploy_status(exit_code: bool) -> None:
    """Drift since the last deployment: rules created, changed, re-ordered, enabled, disabled or deleted, and
    configuration values changed, added or removed."""
    from bastion.deploy import service
    from bastion.deploy.drift import render_drift

    found = _run(service.drift)
    click.echo(render_drift(found))
    if exit_code and found.drifted:
        raise SystemExit(1)


@deploy_group.group("manual")
def deploy_manual() -> None:
    """Rules a deploy leaves alone (Auth0's manual rules): never created, changed, re-ordered or deleted."""


@deploy_manual.command("add")
@click.argument("name")
def deploy_manual_add(name: str) -> None:
    """Mark the rule NAME manual (it need not exist yet)."""
    from bastion.deploy import service

    added = _run(lambda services: service.add_manual_rule(services, name))
    click.echo(f"rule {name!r} is manual" + ("" if added else " (it already was)"))


@deploy_manual.command("remove")
@click.argument("name")
def deploy_manual_remove(name: str) -> None:
    """Let deploys manage the rule NAME again."""
    from bastion.deploy import service

    if not _run(lambda services: service.remove_manual_rule(services, name)):
        raise click.ClickException(f"rule {name!r} is not manual")
    click.echo(f"rule {name!r} is no longer manual")


@deploy_manual.command("list")
def deploy_manual_list() -> None:
    """The manual rules' names."""
    from bastion.deploy import service

    names = _run(service.manual_rules)
    click.echo("\n".join(names) if names else "no manual rules")
