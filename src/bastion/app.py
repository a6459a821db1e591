"""create_app(settings): the only place where Bastion is wired together.

    /authorize /oauth/* /userinfo /.well-known/* /v2/logout /oidc/logout   oidc/routes.py
    /u/login /u/signup /u/consent /continue                                  login/routes.py
    /u/login/upstream /login/callback                                        login/upstream_routes.py
    /u/mfa/*                                                                 mfa/pages.py (+ webauthn.py, duo.py)
    /mfa/*                                                                   mfa/api.py
    /passwordless/* /u/passwordless*                                         passwordless/routes.py, pages.py
    /samlp/*                                                                 saml/routes.py
    /dbconnections/*                                                         dbconnections.py
    /u/email-verification /u/reset-password                                  emails/pages.py
    /deploy/webhooks/{provider}                                              deploy/webhooks.py
    /api/v2/*                                                                management/ (FastAPI)
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from bastion.dbconnections import DbConnectionRoutes
from bastion.demo import DemoRoutes
from bastion.deploy.webhooks import DeployWebhooks
from bastion.emails.pages import EmailLinkPages
from bastion.errors import OAuthError, PageError
from bastion.login.flow import LoginFlow
from bastion.login.routes import LoginRoutes
from bastion.login.upstream_routes import UpstreamLoginRoutes
from bastion.management.app import create_management_app
from bastion.mfa.api import MfaApi
from bastion.mfa.duo import DuoPages
from bastion.mfa.pages import MfaPages
from bastion.mfa.webauthn import WebAuthnPages
from bastion.oidc.documents import PublishedDocuments
from bastion.oidc.routes import OidcRoutes
from bastion.pages import Pages
from bastion.passwordless.routes import PasswordlessRoutes
from bastion.saml.routes import SAML_PROTOCOL, SamlRoutes
from bastion.services import Services, build_services
from bastion.settings import Settings, load_settings
from bastion.web import BodySizeLimit, json_response

__all__ = ["create_app", "app_from_environment"]

log = logging.getLogger("bastion")

# Paths whose errors are JSON (APIs) rather than pages (browsers).
_JSON_PREFIXES = ("/oauth/", "/userinfo", "/dbconnections/", "/.well-known/", "/mfa/", "/passwordless/start", "/deploy/")


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    services = services or build_services(settings)
    pages = Pages()
    oidc = OidcRoutes(services, pages)
    saml = SamlRoutes(services, pages)
    flow = LoginFlow(services, responders={"oidc-basic-profile": oidc.responder, SAML_PROTOCOL: saml.responder})
    oidc.flow = flow
    saml.flow = flow
    login = LoginRoutes(services, pages, flow)
    upstream_login = UpstreamLoginRoutes(services, pages, flow)
    mfa_pages = MfaPages(services, pages, flow)
    webauthn_pages = WebAuthnPages(mfa_pages)
    duo_pages = DuoPages(mfa_pages)
    mfa_api = MfaApi(services)
    passwordless = PasswordlessRoutes(services, pages, flow)
    dbconnections = DbConnectionRoutes(services)
    email_links = EmailLinkPages(services, pages)
    deploy_webhooks = DeployWebhooks(services)

    async def home(request: Request) -> Response:
        return pages.render("home.html", issuer=settings.issuer)

    async def oauth_error(request: Request, error: OAuthError) -> Response:
        return json_response(error.as_json(), error.status, headers=error.headers)

    async def page_error(request: Request, error: PageError) -> Response:
        if request.url.path.startswith(_JSON_PREFIXES):
            return json_response({"error": "invalid_request", "error_description": error.message}, error.status)
        return pages.error(error.title, error.message, status=error.status)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if request.url.path.startswith(_JSON_PREFIXES):
            return json_response({"error": "server_error", "error_description": "Internal error"}, 500)
        return pages.error("Something went wrong", "The server could not complete this request. Try again later.", status=500)

    async def not_found(request: Request, error: Exception) -> Response:
        if request.url.path.startswith(_JSON_PREFIXES):
            return json_response({"error": "not_found", "error_description": "Not found"}, 404)
        return pages.error("Not found", "There is nothing at this address.", status=404)

    async def method_not_allowed(request: Request, error: Exception) -> Response:
        return json_response({"error": "invalid_request", "error_description": f"{request.method} is not allowed here"}, 405)

    @asynccontextmanager
    async def lifespan(_app):
        services.background.start()
        yield
        await services.close()

    demo_routes = DemoRoutes(services, pages).routes() if settings.demo else []

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            *demo_routes,
            *oidc.routes(),
            *login.routes(),
            *upstream_login.routes(),
            *mfa_pages.routes(),
            *webauthn_pages.routes(),
            *duo_pages.routes(),
            *mfa_api.routes(),
            *passwordless.routes(),
            *saml.routes(),
            *dbconnections.routes(),
            *email_links.routes(),
            *deploy_webhooks.routes(),
            Mount("/api/v2", app=create_management_app(services)),
        ],
        middleware=[
            Middleware(PublishedDocuments, services=services),
            # Push webhooks carry commit lists: their route bounds its body itself (deploy/webhooks.py).
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, exempt_prefixes=("/deploy/webhooks/",)),
        ],
        exception_handlers={
            OAuthError: oauth_error,
            PageError: page_error,
            404: not_found,
            405: method_not_allowed,
            Exception: unexpected,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.trusted_proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)
    return app


def app_from_environment() -> Starlette:
    """The factory the production server imports in each worker process (settings from the environment)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(load_settings())
