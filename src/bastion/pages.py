"""Server-rendered pages (Jinja2, autoescaped). No page needs JavaScript."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["Pages"]

TEMPLATES = Path(__file__).parent / "templates"

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; form-action *; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class Pages:
    def __init__(self, *, tenant_name: str = "Bastion"):
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False
        )
        self._env.globals["tenant_name"] = tenant_name

    def render(self, template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        body = self._env.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers={**_SECURITY_HEADERS, **(headers or {})})

    def error(self, title: str, message: str, *, status: int = 400) -> HTMLResponse:
        return self.render("error.html", status=status, title=title, message=message)

    def form_post(self, action: str, fields: list[tuple[str, str]]) -> HTMLResponse:
        """An auto-submitting form that carries `fields` to `action` (OAuth form_post, SAML HTTP-POST).
        Its one script runs by nonce, and the form may post only to `action`'s origin."""
        nonce = secrets.token_urlsafe(12)
        parts = urlsplit(action)
        return self.render(
            "form_post.html", action=action, fields=fields, nonce=nonce,
            headers={
                "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; form-action {parts.scheme}://{parts.netloc}; frame-ancestors 'none'"
            },
        )
