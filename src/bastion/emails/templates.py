"""The emails Bastion writes, from Jinja2 templates the operator can replace.

Each template is a pair of files named after Auth0's email templates:

    verify_email.txt     "Subject: ..." on the first line, a blank line, then the text body
    verify_email.html    the HTML alternative (optional; autoescaped)

A template stored through the Management API (`render_string`) is an HTML body, always
autoescaped. Bastion's own are in `src/bastion/templates/email/`. A file of the same name in
BASTION_EMAIL_TEMPLATES_DIR replaces Bastion's; an operator's template may also extend
Bastion's (`{% extends "bastion/verify_email.html" %}`). Templates render in Jinja2's
sandbox, with these variables (Auth0's names):

    user          email, name, nickname, given_name, family_name, user_id, user_metadata, app_metadata
    application   name, client_id (and clientID), when the email belongs to one application
    url           the link (verification, password reset, magic link)
    code          a passwordless code
    lifetime      how long the link or code works, in words ("5 days")
    friendly_name, support_email, support_url   from the tenant settings
    factor        the second factor added (enrollment_email)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader, TemplateNotFound, TemplateSyntaxError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["EmailTemplates", "EmailTemplateError", "RenderedEmail", "TEMPLATE_NAMES", "BUILT_IN", "lifetime_in_words", "html_to_text"]

log = logging.getLogger("bastion.emails")

BUILT_IN = Path(__file__).resolve().parent.parent / "templates" / "email"
TEMPLATE_NAMES = ("verify_email", "welcome_email", "reset_email", "enrollment_email", "passwordless_code", "passwordless_link")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


class EmailTemplateError(ValueError):
    """An operator's template is unusable (no subject line, a syntax error)."""


def lifetime_in_words(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and (seconds % size == 0 or unit == "minute"):
            count = max(1, round(seconds / size))
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return "1 minute"


class EmailTemplates:
    def __init__(self, operator_dir: Path | None = None):
        built_in = FileSystemLoader(BUILT_IN)
        self._built_in = _environment(built_in)
        # A stored template is a string, so select_autoescape would not escape it (no .html
        # name): its body is HTML, and the values it inserts (a name typed at public signup)
        # must not become markup in the email, so it always escapes. Its subject is a header,
        # not HTML, and is rendered without escaping.
        self._stored_html = ImmutableSandboxedEnvironment(loader=built_in, autoescape=True, keep_trailing_newline=True)
        self._operator = _environment(ChoiceLoader([FileSystemLoader(operator_dir), PrefixLoader({"bastion": built_in})])) \
            if operator_dir else None

    def render(self, name: str, **context: Any) -> RenderedEmail:
        """The operator's template when there is one; Bastion's when there is none, or when the
        operator's fails (a syntax error, a missing subject line, what the sandbox refuses): the
        email still goes, and the failure is logged for the operator to fix."""
        if self._operator is not None and _has(self._operator, f"{name}.txt"):
            try:
                return _render(self._operator, name, context)
            except Exception:
                log.exception("the operator's email template %r failed; Bastion's own was used", name)
        return _render(self._built_in, name, context)

    def check_string(self, subject: str | None, body: str | None) -> None:
        """Raise EmailTemplateError, naming the line, when a stored template would not compile
        (Liquid tags Jinja2 lacks, such as `{% assign %}`, or a typo), so it is refused when saved
        instead of failing the emails it should send."""
        for part, source, env in (("subject", subject, self._built_in), ("body", body, self._stored_html)):
            if source is None:
                continue
            try:
                env.parse(source)
            except TemplateSyntaxError as error:
                raise EmailTemplateError(f"the {part} does not compile: {error.message} (line {error.lineno})") from None

    def render_string(self, subject: str, body: str, **context: Any) -> RenderedEmail:
        """A template stored through the Management API (Auth0's email-templates): an HTML body,
        autoescaped; the text part is derived from it (html_to_text unescapes, so it reads plain)."""
        html = self._stored_html.from_string(body).render(**context)
        return RenderedEmail(subject=self._built_in.from_string(subject).render(**context).strip(), text=html_to_text(html), html=html)


def _environment(loader) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=loader, autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        keep_trailing_newline=True,
    )


def _has(env: ImmutableSandboxedEnvironment, name: str) -> bool:
    try:
        env.get_template(name)
    except TemplateNotFound:
        return False
    except Exception:
        return True  # it exists but does not compile: render() reports it
    return True


def _render(env: ImmutableSandboxedEnvironment, name: str, context: dict[str, Any]) -> RenderedEmail:
    subject, body = _split_subject(name, env.get_template(f"{name}.txt").render(**context))
    try:
        html = env.get_template(f"{name}.html").render(**context)
    except TemplateNotFound:
        html = None
    return RenderedEmail(subject=subject, text=body, html=html)


def _split_subject(name: str, text: str) -> tuple[str, str]:
    first, _, rest = text.lstrip("\n").partition("\n")
    if not first.lower().startswith("subject:"):
        raise EmailTemplateError(f"{name}.txt must start with a 'Subject: ...' line")
    return first.split(":", 1)[1].strip(), rest.lstrip("\n")


def html_to_text(html: str) -> str:
    """A plain-text part for an email written in HTML only: paragraphs kept, links spelled out."""
    text = re.sub(r"<(br|/p|/div|/h[1-6]|/li|/tr)\s*/?>", "\n", html, flags=re.IGNORECASE)
    text = re.sub(r"<a\s[^>]*href=\"([^\"]+)\"[^>]*>(.*?)</a>", r"\2 (\1)", text, flags=re.IGNORECASE | re.DOTALL)
    text = unescape(re.sub(r"<[^>]+>", "", text))
    return "\n".join(line.strip() for line in text.splitlines()).strip() + "\n"
