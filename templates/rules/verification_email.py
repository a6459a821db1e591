"""Send Bastion's verification email to users whose address is not verified yet, once.

What it does
    When the user has an email address that is not verified (``user.email_verified`` is
    not true) and ``app_metadata.verification_email_sent`` is not true, queues Bastion's
    account email ``verify_email`` to the user with ``api.email.send(template=...)``,
    then saves ``app_metadata.verification_email_sent = true`` so later logins send no
    other. The email carries a single-use link,
    ``{issuer}/u/email-verification?ticket=...``, that sets ``email_verified`` when it is
    opened. The email goes through Bastion's outbox (the SMTP server of the
    ``smtp_host``/``smtp_port`` settings), retried while that server is down: the login
    never waits for it. The email's text is the ``verify_email`` template
    (``BASTION_EMAIL_TEMPLATES_DIR`` to change it).

Replaces the Auth0 use case
    "Send an email to users that prompts them to verify the provided email" - Auth0 docs:
    email/custom (#verification-email), whose rule posts ``{user, context, secretToken}``
    to the customer's own mail API and then sets ``app_metadata.verification_email_sent``.
    Here Bastion is that mail API: no secret to keep, nothing of the context leaves the
    server, and the link is Bastion's own.

Configuration (api.configuration)
    none.

Adapt
    Do not also turn on the database connection's ``verify_email`` option: it sends the
    same email at sign-up, and users would get two. To let unverified users in only
    after verification, add a rule that denies them (``user.email_verified`` is then
    false on the next login until the link is opened). To send your own text instead of
    the template, use ``api.email.send(to=user.email, subject=..., text=...)`` (but then
    the link is yours to build). If the metadata write fails after the email was queued,
    the next login queues another one.
"""


async def rule(user, context, api):
    if not user.email or user.email_verified is True:
        return
    if user.app_metadata.get("verification_email_sent") is True:
        return
    await api.email.send(template="verify_email")
    await api.users.update_app_metadata(user.user_id, {"verification_email_sent": True})
