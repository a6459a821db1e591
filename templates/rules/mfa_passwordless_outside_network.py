"""Ask passwordless logins from outside the corporate network for a second factor.

What it does
    When the login was made with a passwordless connection (an emailed or texted code or
    link: ``context.connection_strategy`` is ``email`` or ``sms``) and the client's IP
    address (``context.request.ip``) is not inside one of the configured corporate
    networks, the rule sets ``context.multifactor`` (provider ``any``): the user passes,
    or enrols, a second factor before the login completes. Logins from inside the network,
    and password logins, are not affected. The refresh-token grant is skipped (it cannot
    show a page). A missing or unparsable address counts as outside.

Replaces the Auth0 use case
    "Multifactor authentication: require MFA for passwordless logins from outside the
    corporate network" (Rules Use Cases; Auth0 template ``mfa-passwordless-outside-network``
    style: ``ipaddr.js`` range check plus ``context.multifactor``).

Configuration (api.configuration)
    CORPORATE_CIDRS                 required. Comma- or space-separated networks, e.g.
                                    ``10.0.0.0/8, 2001:db8::/32``.
    MFA_ALLOW_REMEMBER_BROWSER      optional, ``true`` to let a passed browser skip the factor
                                    for 30 days (default: ask on every such login).

Adapt
    ``context.request.ip`` is the TCP peer: behind a reverse proxy, configure
    ``BASTION_TRUSTED_PROXIES`` so that Bastion reads the client's address from
    ``X-Forwarded-For`` (docs/configuration.md); otherwise every login seems to come from
    the proxy, which is probably inside your network.
"""

import ipaddress

PASSWORDLESS = ("email", "sms")


def _networks(api):
    value = api.configuration.get("CORPORATE_CIDRS", "")
    networks = [ipaddress.ip_network(item, strict=False) for item in value.replace(",", " ").split() if item]
    if not networks:
        raise ValueError("CORPORATE_CIDRS must list at least one network")
    return networks


def _inside(ip, networks):
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in networks)


def rule(user, context, api):
    if context.protocol == "oauth2-refresh-token":
        return
    if context.connection_strategy not in PASSWORDLESS:
        return
    if _inside(context.request.ip, _networks(api)):
        return
    remember = api.configuration.get("MFA_ALLOW_REMEMBER_BROWSER", "").strip().lower() == "true"
    context.multifactor = {"provider": "any", "allow_remember_browser": remember}
