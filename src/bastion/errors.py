"""The one error tree. Each error knows how it is shown; the HTTP edge maps it.

    BastionError
    ├── OAuthError          {error, error_description} JSON (RFC 6749 §5.2), or the
    │                       error parameters on a redirect (RFC 6749 §4.1.2.1)
    ├── ManagementError     Auth0 Management API: {statusCode, error, message, errorCode}
    └── PageError           a readable HTML page, when there is no safe place to redirect

Nothing else reaches a client: any other exception becomes a generic 500 whose
details go only to the server log.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["BastionError", "OAuthError", "ManagementError", "PageError"]


class BastionError(Exception):
    """Base of every error Bastion shows to a client."""


class OAuthError(BastionError):
    """An OAuth 2.0 / OIDC error: `error` is the registered code."""

    def __init__(
        self, error: str, description: str = "", status: int = 400, headers: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}  # more members of the JSON body (the mfa_token of mfa_required)

    def as_json(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        body.update(self.extra)
        return body


class ManagementError(BastionError):
    """An Auth0-shaped Management API error."""

    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def as_json(self) -> dict:
        body: dict = {"statusCode": self.status, "error": HTTPStatus(self.status).phrase, "message": self.message}
        if self.error_code:
            body["errorCode"] = self.error_code
        return body


class PageError(BastionError):
    """An error shown to a person as a page (for example: an unknown client or redirect URI)."""

    def __init__(self, title: str, message: str, status: int = 400):
        super().__init__(f"{title}: {message}")
        self.title = title
        self.message = message
        self.status = status
