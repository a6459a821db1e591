"""Allow one application only from the corporate network (a list of IP ranges).

What it does
    For the configured application (matched by ``client_id`` or name, exactly), the
    login is denied with ``error=unauthorized`` unless the client's IP address
    (``context.request.ip``) is inside one of the configured CIDR ranges. IPv4 and
    IPv6 ranges both work; an IPv4 address seen as IPv4-mapped IPv6 (``::ffff:a.b.c.d``)
    is compared as IPv4. A missing or unparsable address is denied. Other applications
    are not affected.

Replaces the Auth0 use case
    "Sample Use Cases: Rules with Authorization" - allow access only from a specific
    IP range (Auth0 docs: authorization/concepts/sample-use-cases-rules, which parses
    ``context.request.ip`` with ``ipaddr.js`` and checks ``192.168.1.134/26``; template
    ``ip-address-allowlist``).

Configuration (api.configuration)
    IP_RANGE_CLIENT_ID      the application's client_id (preferred).
    IP_RANGE_CLIENT_NAME    or its name, exactly as registered. At least one is
                            required; either matching makes the rule apply.
    IP_RANGE_ALLOWED_CIDRS  required. Comma- or space-separated networks, e.g.
                            ``203.0.113.0/24, 2001:db8::/32``; a single address is a
                            /32 (or /128).

Adapt
    ``context.request.ip`` is the TCP peer's address: Bastion does not read
    ``X-Forwarded-For`` (docs/configuration.md), so behind a reverse proxy or load
    balancer every login comes from the proxy's address. Do not use this rule there
    unless Bastion is reached directly: with a proxy on your internal network and that
    network in the list, the rule would let everyone in. Auth0's template denied with a plain ``Error`` (the
    application got a generic error); this one uses ``UnauthorizedError`` so the
    application can tell the user why.
"""

import ipaddress


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _is_target_app(context, api):
    client_id = api.configuration.get("IP_RANGE_CLIENT_ID", "").strip()
    client_name = api.configuration.get("IP_RANGE_CLIENT_NAME", "").strip()
    if not client_id and not client_name:
        raise ValueError("set IP_RANGE_CLIENT_ID or IP_RANGE_CLIENT_NAME")
    return (client_id and context.client_id == client_id) or (client_name and context.client_name == client_name)


def rule(user, context, api):
    if not _is_target_app(context, api):
        return

    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in _split(api.configuration["IP_RANGE_ALLOWED_CIDRS"])]
    if not networks:
        raise ValueError("IP_RANGE_ALLOWED_CIDRS must list at least one network")

    try:
        address = ipaddress.ip_address(context.request.ip or "")
    except ValueError:
        raise UnauthorizedError("Access to this application is not allowed from your network.") from None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped

    if not any(address.version == network.version and address in network for network in networks):
        raise UnauthorizedError("Access to this application is not allowed from your network.")
