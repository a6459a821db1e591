"""Password hashing with argon2id (OWASP's first profile: m=19 MiB, t=2, p=1).

Hashing costs ~40 ms of CPU, so it runs in a worker thread and never blocks the
event loop. `verify` also reports when a stored hash should be upgraded.
"""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordPolicy", "hash_password", "verify_password", "check_password_policy", "DUMMY_HASH"]

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when the user does not exist, so that timing does not reveal it.
DUMMY_HASH = _HASHER.hash("bastion-dummy-password-for-timing")


class PasswordPolicy:
    """Auth0's "fair" policy by default: at least 8 characters, 3 of 4 character kinds."""

    min_length = 8
    max_length = 1024

    @classmethod
    def problems(cls, password: str) -> list[str]:
        problems = []
        if len(password) < cls.min_length:
            problems.append(f"at least {cls.min_length} characters")
        if len(password) > cls.max_length:
            problems.append(f"at most {cls.max_length} characters")
        kinds = sum(
            [
                any(c.islower() for c in password),
                any(c.isupper() for c in password),
                any(c.isdigit() for c in password),
                any(not c.isalnum() for c in password),
            ]
        )
        if kinds < 3:
            problems.append("at least 3 of: lower case letters, upper case letters, numbers, special characters")
        return problems


def check_password_policy(password: str) -> str | None:
    """A readable message when the password is too weak, else None."""
    problems = PasswordPolicy.problems(password)
    if not problems:
        return None
    return "Password is too weak: it needs " + "; ".join(problems) + "."


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_HASHER.hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user has a password."""
    return await anyio.to_thread.run_sync(_verify, stored_hash or DUMMY_HASH, password) and stored_hash is not None
