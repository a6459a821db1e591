"""Send Bastion's welcome email once, after the user's address is verified.

What it does
    On the first login where ``user.email_verified`` is true and
    ``app_metadata.welcome_email_sent`` is not, queues Bastion's account email
    ``welcome_email`` to the user (``api.email.send(template="welcome_email")``), then
    saves ``app_metadata.welcome_email_sent = true``: one welcome per user, never before
    the address is proven. The email goes through Bastion's outbox (retried while the
    SMTP server is down); the login never waits for it.

Replaces the Auth0 use case
    "Send a welcome email" - Auth0 docs: email/custom (#welcome-email), whose rule posts
    ``{user, context, secretToken}`` to the customer's mail API when the email is verified
    and sets ``user.persistent.welcome_email_sent``. Here the email is Bastion's own and
    the flag is saved with ``api.users.update_app_metadata`` (``user.persistent`` is gone).

Configuration (api.configuration)
    none.

Adapt
    Pair it with ``verification_email.py``: that one sends the link, this one the welcome
    at the first login after the link was opened. Do not also turn on the database
    connection's ``welcome_email`` option: Bastion then sends the welcome itself (at
    sign-up, or when the link is opened) and users would get two. The text is the
    ``welcome_email`` template (``BASTION_EMAIL_TEMPLATES_DIR``).
"""


async def rule(user, context, api):
    if not user.email or user.email_verified is not True:
        return
    if user.app_metadata.get("welcome_email_sent") is True:
        return
    await api.email.send(template="welcome_email")
    await api.users.update_app_metadata(user.user_id, {"welcome_email_sent": True})
