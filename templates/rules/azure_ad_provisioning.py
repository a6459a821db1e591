"""Provision a licensed Azure AD (Microsoft Entra ID) account for each user of your Office 365 application.

What it does
    For the Office 365 application only (``AZURE_AD_CLIENT_ID``, a Bastion client_id):

    - A user already provisioned (``app_metadata.office365Provisioned``) gets ``user.upn``
      and ``user.immutable_id`` from ``app_metadata.office365UPN`` /
      ``office365ImmutableId``; no call is made.
    - Otherwise the rule gets a Microsoft Graph token (client credentials:
      ``POST {AZURE_AD_LOGIN_URL}/{AZURE_AD_TENANT}/oauth2/v2.0/token``, scope
      ``https://graph.microsoft.com/.default``), creates the account
      (``POST {GRAPH_API_URL}/v1.0/users``: enabled, ``displayName``, ``mailNickname``
      and ``userPrincipalName`` ``bastion-<uuid>@<AZURE_AD_DOMAIN>``, a random password
      nobody knows, ``usageLocation``, ``onPremisesImmutableId`` = base64 of the uuid's
      bytes), saves ``office365UserId``, ``office365UPN`` and ``office365ImmutableId`` in
      ``app_metadata`` at once, finds the SKU ``AZURE_AD_SKU`` in
      ``GET /v1.0/subscribedSkus`` and assigns it (``POST /v1.0/users/{id}/assignLicense``),
      then saves ``office365Provisioned: true``. A login that failed after creating the
      account reuses it next time (no second account).

    Then the UPN goes into the ID token as ``<CLAIMS_NAMESPACE>upn`` (when
    ``CLAIMS_NAMESPACE`` is set) and, on a SAML login, into the response:
    ``http://schemas.xmlsoap.org/claims/UPN`` and Office 365's ImmutableID attribute are
    mapped to ``user.upn`` / ``user.immutable_id``. Every call is awaited; any failure
    (a refused token, a Graph error, an unknown SKU) raises and the login fails closed
    (``access_denied``; the reason is in the execution record): the application cannot
    work without the account.

Replaces the Auth0 use case
    "Provision/Log In Users from Azure Active Directory" - Auth0 docs: customize/
    integrations/office-365-custom-provisioning (the ``AUTH0_OFFICE365_CLIENT_ID`` rule:
    client-credentials token, create the user with an ``auth0-<uuid>`` UPN and a base64
    immutable id, assign the ``O365_BUSINESS`` license, persist
    ``office365Provisioned/office365UPN/office365ImmutableId``, set
    ``user.upn``/``user.inmutableid``). Auth0's rule used the retired Azure AD Graph and
    then slept 15 seconds for the license to propagate; this one uses Microsoft Graph
    and does not sleep (see Adapt).

Configuration (api.configuration)
    AZURE_AD_CLIENT_ID             required. The client_id of the Bastion application
                                   (WS-Fed/SAML) Office 365 signs in through.
    AZURE_AD_TENANT                required. The Entra tenant id or domain.
    AZURE_AD_GRAPH_CLIENT_ID       required. The app registration's application id,
                                   with the Graph application permissions
                                   User.ReadWrite.All and Organization.Read.All.
    AZURE_AD_GRAPH_CLIENT_SECRET   required. Its client secret.
    AZURE_AD_DOMAIN                required. The (federated) domain of the UPNs, e.g.
                                   ``example.com``.
    AZURE_AD_SKU                   optional. The license's skuPartNumber. Default
                                   ``O365_BUSINESS`` (Microsoft 365 Apps for business).
    AZURE_AD_USAGE_LOCATION        optional. Two-letter country code. Default ``US``.
    AZURE_AD_SKIP_CONNECTIONS      optional. Connections whose users already have an
                                   account (an on-premises AD connection): left alone.
    CLAIMS_NAMESPACE               optional. Adds the ``upn`` claim to the ID token.
    AZURE_AD_LOGIN_URL             optional. Default ``https://login.microsoftonline.com``.
    GRAPH_API_URL                  optional. Default ``https://graph.microsoft.com``.
    AZURE_AD_TIMEOUT_SECONDS       optional. Each call, 0.1 to 15. Default 5.

Adapt
    A license can take a few seconds to apply: a first sign-in to Office 365 right after
    provisioning may be refused once; the user signs in again. Four awaited calls must
    fit within the rules time limit (``BASTION_RULES_TIMEOUT``, 20 s). Set
    ``displayName`` from your own fields in ``_new_user``. Accounts are never removed by
    this rule: deprovision them when users leave.
"""

import base64
import secrets
import uuid
from urllib.parse import quote

DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_SKU = "O365_BUSINESS"
UPN_ATTRIBUTE = "http://schemas.xmlsoap.org/claims/UPN"
IMMUTABLE_ID_ATTRIBUTE = "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID"


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _timeout(api):
    value = float(api.configuration.get("AZURE_AD_TIMEOUT_SECONDS", "").strip() or 5)
    if not 0.1 <= value <= 15:
        raise ValueError("AZURE_AD_TIMEOUT_SECONDS must be between 0.1 and 15 seconds")
    return value


def _is_saml_login(context):
    return context.protocol == "samlp" or (
        context.protocol == "redirect-callback" and context.original_protocol == "samlp"
    )


def _checked(response, what):
    if not response.ok:
        code = None
        try:
            body = response.json()
            code = body.get("error") if isinstance(body, dict) else None
            if isinstance(code, dict):
                code = code.get("code")
        except ValueError:
            pass
        raise RuntimeError(f"{what} answered HTTP {response.status_code} ({code})")
    return response.json()


def _password():
    """Random, never shown, and meeting Entra's complexity rule (3 of 4 character classes)."""
    return secrets.token_urlsafe(24) + "-Aa1"


def _new_user(user, api, guid):
    domain = api.configuration["AZURE_AD_DOMAIN"].strip().lstrip("@")
    return {
        "accountEnabled": True,
        "displayName": user.name or user.email or user.user_id,
        "mailNickname": f"bastion-{guid.hex}",
        "userPrincipalName": f"bastion-{guid}@{domain}",
        "passwordProfile": {"forceChangePasswordNextSignIn": False, "password": _password()},
        "usageLocation": (api.configuration.get("AZURE_AD_USAGE_LOCATION", "").strip() or "US").upper(),
        "onPremisesImmutableId": base64.b64encode(guid.bytes_le).decode(),
    }


async def _graph_token(api, timeout):
    login_url = api.configuration.get("AZURE_AD_LOGIN_URL", "").strip().rstrip("/") or DEFAULT_LOGIN_URL
    tenant = quote(api.configuration["AZURE_AD_TENANT"].strip(), safe="")
    response = await api.http.post(f"{login_url}/{tenant}/oauth2/v2.0/token", timeout=timeout, data={
        "grant_type": "client_credentials",
        "client_id": api.configuration["AZURE_AD_GRAPH_CLIENT_ID"].strip(),
        "client_secret": api.configuration["AZURE_AD_GRAPH_CLIENT_SECRET"].strip(),
        "scope": GRAPH_SCOPE,
    })
    token = _checked(response, "the Azure AD token endpoint").get("access_token")
    if not isinstance(token, str) or not token:
        raise RuntimeError("the Azure AD token endpoint answered without an access_token")
    return token


async def _provision(user, api):
    timeout = _timeout(api)
    graph = api.configuration.get("GRAPH_API_URL", "").strip().rstrip("/") or DEFAULT_GRAPH_URL
    sku_name = api.configuration.get("AZURE_AD_SKU", "").strip() or DEFAULT_SKU
    headers = {"Authorization": f"Bearer {await _graph_token(api, timeout)}"}
    meta = user.app_metadata

    account_id = meta.get("office365UserId")
    if not account_id:  # a previous attempt may have created the account already
        guid = uuid.uuid4()
        created = _checked(await api.http.post(f"{graph}/v1.0/users", json=_new_user(user, api, guid),
                                               headers=headers, timeout=timeout), "Graph (create user)")
        account_id = created["id"]
        await api.users.update_app_metadata(user.user_id, {
            "office365UserId": account_id,
            "office365UPN": created.get("userPrincipalName") or f"bastion-{guid}@{api.configuration['AZURE_AD_DOMAIN']}",
            "office365ImmutableId": created.get("onPremisesImmutableId") or base64.b64encode(guid.bytes_le).decode(),
        })

    skus = _checked(await api.http.get(f"{graph}/v1.0/subscribedSkus", headers=headers, timeout=timeout),
                    "Graph (subscribedSkus)").get("value") or []
    sku_id = next((s.get("skuId") for s in skus if isinstance(s, dict) and s.get("skuPartNumber") == sku_name), None)
    if not sku_id:
        raise RuntimeError(f"the tenant has no subscribed SKU {sku_name}")
    _checked(await api.http.post(f"{graph}/v1.0/users/{quote(account_id, safe='')}/assignLicense", headers=headers,
                                 timeout=timeout, json={"addLicenses": [{"skuId": sku_id, "disabledPlans": []}],
                                                        "removeLicenses": []}),
             "Graph (assignLicense)")
    await api.users.update_app_metadata(user.user_id, {"office365Provisioned": True})


async def rule(user, context, api):
    if context.client_id != api.configuration["AZURE_AD_CLIENT_ID"].strip():
        return
    if context.connection in _split(api.configuration.get("AZURE_AD_SKIP_CONNECTIONS", "")):
        return
    if user.app_metadata.get("office365Provisioned") is not True:
        await _provision(user, api)
    upn, immutable_id = user.app_metadata.get("office365UPN"), user.app_metadata.get("office365ImmutableId")
    if not upn or not immutable_id:
        raise RuntimeError("app_metadata says provisioned but has no office365UPN / office365ImmutableId")
    user.upn = upn
    user.immutable_id = immutable_id

    namespace = api.configuration.get("CLAIMS_NAMESPACE", "").strip()
    if namespace:
        context.id_token[namespace.rstrip("/") + "/upn"] = upn
    if _is_saml_login(context):
        mappings = dict(context.saml_configuration.get("mappings") or {})
        mappings[UPN_ATTRIBUTE] = "upn"
        mappings[IMMUTABLE_ID_ATTRIBUTE] = "immutable_id"
        context.saml_configuration["mappings"] = mappings
