"""Users: database sign-up, profile and metadata updates with Auth0's merge rules, Auth0's JSON shape."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.security.passwords import check_password_policy, hash_password
from bastion.storage import users as user_store
from bastion.storage.records import Identity, User

__all__ = [
    "UserConflict",
    "WeakPassword",
    "PROFILE_FIELDS",
    "create_database_user",
    "apply_user_patch",
    "merge_metadata",
    "user_to_json",
    "identity_to_json",
    "default_picture",
    "EMAIL_PATTERN",
    "is_valid_email",
]

PROFILE_FIELDS = (
    "email",
    "email_verified",
    "username",
    "phone_number",
    "phone_verified",
    "name",
    "nickname",
    "given_name",
    "family_name",
    "picture",
    "blocked",
)


EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
_EMAIL = re.compile(EMAIL_PATTERN)


def is_valid_email(email: str) -> bool:
    return len(email) <= 320 and _EMAIL.match(email) is not None


class UserConflict(Exception):
    """The email or username is already taken in that connection."""


class WeakPassword(Exception):
    """The password does not meet the connection's policy."""


def default_picture(email: str | None, name: str) -> str:
    initials = "".join(part[0] for part in name.split()[:2]).lower() or "u"
    fallback = quote(f"https://cdn.auth0.com/avatars/{initials[:2]}.png", safe="")
    email_hash = hashlib.md5((email or name).strip().lower().encode()).hexdigest()  # noqa: S324 - Gravatar's URL scheme
    return f"https://s.gravatar.com/avatar/{email_hash}?s=480&r=pg&d={fallback}"


async def create_database_user(
    session: AsyncSession,
    *,
    connection: str,
    email: str | None,
    password: str,
    username: str | None = None,
    email_verified: bool = False,
    user_metadata: dict | None = None,
    app_metadata: dict | None = None,
    profile: dict[str, Any] | None = None,
) -> User:
    """Create a user of a database connection. Raises WeakPassword or UserConflict."""
    problem = check_password_policy(password)
    if problem:
        raise WeakPassword(problem)
    email = email.strip().lower() if email else None
    profile = {
        k: v
        for k, v in (profile or {}).items()
        if k in PROFILE_FIELDS and k not in ("email", "username", "email_verified") and v is not None
    }
    local_id = secrets.token_hex(12)
    display = profile.pop("name", None) or email or username or local_id
    nickname = profile.pop("nickname", None) or (email.split("@")[0] if email else username or display)
    picture = profile.pop("picture", None) or default_picture(email, display)
    if email and await user_store.find_user_by_login(session, connection=connection, login=email):
        raise UserConflict("The user already exists.")
    if username and await user_store.find_user_by_login(session, connection=connection, login=username):
        raise UserConflict("The username already exists.")
    try:
        return await user_store.insert_user(
            session,
            user_id=f"auth0|{local_id}",
            identity=Identity(provider="auth0", connection=connection, external_id=local_id, is_social=False, profile_data={}),
            connection=connection,
            email=email,
            email_verified=email_verified,
            username=username,
            password_hash=await hash_password(password),
            name=display,
            nickname=nickname,
            picture=picture,
            user_metadata=user_metadata or {},
            app_metadata=app_metadata or {},
            logins_count=0,
            **profile,
        )
    except IntegrityError as exc:  # a concurrent sign-up won the race; the caller's transaction rolls back
        raise UserConflict("The user already exists.") from exc


def merge_metadata(current: dict, changes: dict | None) -> dict:
    """Auth0's PATCH semantics: top-level keys merge, a key set to null is removed, `{}` clears."""
    if changes is None:
        return current
    if changes == {}:
        return {}
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def apply_user_patch(session: AsyncSession, *, user: User, patch: dict[str, Any]) -> User:
    """Update profile fields, metadata (merged) and the password. Raises WeakPassword or UserConflict.

    A new email address is not verified (Auth0's rule): its `email_verified` becomes false,
    unless the same patch gives `email_verified`. Otherwise an address checked once would
    vouch for whatever address replaced it."""
    changes: dict[str, Any] = {k: v for k, v in patch.items() if k in PROFILE_FIELDS}
    if "email" in changes and changes["email"]:
        changes["email"] = changes["email"].strip().lower()
    if "email" in changes and changes["email"] != user.email and "email_verified" not in changes:
        changes["email_verified"] = False
    if "app_metadata" in patch:
        changes["app_metadata"] = merge_metadata(user.app_metadata, patch["app_metadata"])
    if "user_metadata" in patch:
        changes["user_metadata"] = merge_metadata(user.user_metadata, patch["user_metadata"])
    if patch.get("password") is not None:
        problem = check_password_policy(patch["password"])
        if problem:
            raise WeakPassword(problem)
        changes["password_hash"] = await hash_password(patch["password"])
        changes["last_password_reset"] = datetime.now(timezone.utc)
    try:
        updated = await user_store.update_user(session, user_id=user.user_id, changes=changes)
    except IntegrityError as exc:
        raise UserConflict("The specified new email already exists") from exc
    assert updated is not None
    return updated


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def identity_to_json(identity: Identity) -> dict[str, Any]:
    """Auth0's identity shape. `profileData` is what a linked secondary brings (its profile):
    Auth0 shows it on secondary identities, not on the user's own."""
    body: dict[str, Any] = {
        "connection": identity.connection,
        "user_id": identity.external_id,
        "provider": identity.provider,
        "isSocial": identity.is_social,
    }
    if identity.profile_data or identity.linked_user_id:
        body["profileData"] = dict(identity.profile_data)
    return body


def user_to_json(user: User) -> dict[str, Any]:
    """Auth0's user shape (Management API and rule input)."""
    body: dict[str, Any] = {
        "user_id": user.user_id,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "nickname": user.nickname,
        "picture": user.picture,
        "created_at": _iso(user.created_at),
        "updated_at": _iso(user.updated_at),
        "identities": [identity_to_json(i) for i in user.identities],
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "logins_count": user.logins_count,
    }
    for key in ("username", "phone_number", "given_name", "family_name"):
        value = getattr(user, key)
        if value is not None:
            body[key] = value
    if user.phone_number is not None:
        body["phone_verified"] = user.phone_verified
    if user.last_login:
        body["last_login"] = _iso(user.last_login)
        body["last_ip"] = user.last_ip
    if user.last_password_reset:
        body["last_password_reset"] = _iso(user.last_password_reset)
    if user.blocked:
        body["blocked"] = True
    return body
