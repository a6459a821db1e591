"""Where Bastion may send a request on a rule's behalf: the SSRF guard.

A destination must be on the operator's allow-list when there is one
(BASTION_RULES_HTTP_ALLOWED_HOSTS: exact host names, or `.example.com` for a domain and
its subdomains), and must resolve to public addresses only, unless
BASTION_RULES_HTTP_ALLOW_PRIVATE is set. Checked when a rule calls and again when a queued
request is delivered (a name may resolve elsewhere by then).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from bastion.settings import Settings

__all__ = ["DestinationRefused", "check_destination", "check_url", "display_url"]


class DestinationRefused(Exception):
    """The rule may not call this URL; the message says why (and names no secret)."""


def display_url(url: str) -> str:
    """The URL as records show it: scheme, host and path; never the query, which often holds keys."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


async def check_url(settings: Settings, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"api.http accepts http and https URLs only, not {display_url(url)!r}")
    await check_destination(settings, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


async def check_destination(settings: Settings, host: str, port: int) -> None:
    allowed = settings.rules_http_allowed_hosts
    if allowed and not any(host == h or (h.startswith(".") and host.endswith(h)) for h in allowed):
        raise DestinationRefused(f"{host} is not in BASTION_RULES_HTTP_ALLOWED_HOSTS")
    if settings.rules_http_allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DestinationRefused(f"cannot resolve {host}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise DestinationRefused(f"{host} resolves to a private or local address; rules may not call it")
