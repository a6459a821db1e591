"""The services one app runs with. Only `app.create_app` (and the CLI) builds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bastion.background import Background
from bastion.emails.templates import EmailTemplates
from bastion.keys.keyring import Keyring
from bastion.login.upstream import UpstreamProviders
from bastion.mail import Mailer
from bastion.outbox import OUTBOX_JOB, Outbox
from bastion.saml.keys import SamlKeys
from bastion.security.sealing import Sealer
from bastion.settings import Settings
from bastion.storage.database import Database
from bastion.tenant.cache import TenantCache

if TYPE_CHECKING:
    from bastion.rules.engine import RulesEngine

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    settings: Settings
    database: Database
    sealer: Sealer
    keyring: Keyring
    tenant: TenantCache
    mailer: Mailer
    email_templates: EmailTemplates
    saml_keys: SamlKeys
    # Upstream OpenID Connect providers (connections `oidc`, `waad`): their HTTP client and cached
    # metadata. A test may replace it with one on another transport before the first login.
    upstream: UpstreamProviders = field(default_factory=UpstreamProviders)
    # The pollers a server process runs besides its requests (background.py): started by the
    # app's lifespan, stopped first on close.
    background: Background = field(default_factory=Background)
    rules: RulesEngine = field(init=False)
    outbox: Outbox = field(init=False)

    async def close(self) -> None:
        await self.background.stop()
        await self.outbox.close()
        await self.rules.close()
        await self.upstream.aclose()
        await self.database.dispose()


def build_services(settings: Settings) -> Services:
    if settings.secret_key is None:
        raise ValueError("settings.secret_key is unset: build settings with bastion.settings.load_settings()")
    database = Database(settings.effective_database_url)
    sealer = Sealer(settings.secret_key)
    services = Services(
        settings=settings,
        database=database,
        sealer=sealer,
        keyring=Keyring(database, sealer, default_alg=settings.signing_alg, cache_ttl=settings.cache_ttl),
        tenant=TenantCache(database, sealer, ttl=settings.cache_ttl),
        mailer=Mailer(settings),
        email_templates=EmailTemplates(settings.email_templates_dir),
        saml_keys=SamlKeys(database, sealer, issuer=settings.issuer, cache_ttl=settings.cache_ttl),
    )
    from bastion.rules.engine import RulesEngine

    services.rules = RulesEngine(services)
    services.outbox = Outbox(
        settings=settings, database=database, sealer=sealer, mailer=services.mailer,
        wake=lambda: services.background.wake(OUTBOX_JOB),
    )
    services.background.add(services.outbox, max_wait=settings.outbox_poll_interval)
    from bastion.log_streams.delivery import LogStreamDelivery

    services.background.add(LogStreamDelivery(services), max_wait=settings.log_stream_poll_interval)
    return services
