"""Auth0's list shapes: a bare array, or `{"<collection>": [...], start, limit, length, total}`
with `include_totals=true`; checkpoint pagination (`take`/`from`) answers `{"<collection>": [...], "next"}`."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from bastion.errors import ManagementError
from bastion.storage.paging import Page

__all__ = ["PageParams", "page_params", "log_page_params", "list_body", "MAX_PAGE"]

# A page number past any real list, bounded so that the offset fits a 64-bit database integer.
MAX_PAGE = 1_000_000


class PageParams:
    def __init__(self, page: int, per_page: int, include_totals: bool, take: int | None, from_: str | None):
        self.checkpoint = take is not None
        if self.checkpoint:
            try:
                offset = int(from_ or 0)
            except ValueError:
                raise ManagementError(400, "Invalid 'from' cursor", "invalid_query_string") from None
            if not 0 <= offset <= MAX_PAGE * 100:
                raise ManagementError(400, "Invalid 'from' cursor", "invalid_query_string")
            self.per_page = take or 50
            if offset % self.per_page:
                raise ManagementError(400, "Use the 'next' cursor with the same 'take'", "invalid_query_string")
            self.page = offset // self.per_page
            self.offset = offset
        else:
            self.page, self.per_page, self.offset = page, per_page, page * per_page
        self.include_totals = include_totals
        self.cursor: str | None = None  # the logs' checkpoint: a log_id (log_page_params)


def page_params(
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(50, ge=1, le=100),
    include_totals: bool = Query(False),
    take: int | None = Query(None, ge=1, le=100),
    from_: str | None = Query(None, alias="from"),
) -> PageParams:
    return PageParams(page, per_page, include_totals, take, from_)


def log_page_params(
    page: int = Query(0, ge=0, le=MAX_PAGE),
    per_page: int = Query(50, ge=1, le=100),
    include_totals: bool = Query(False),
    take: int | None = Query(None, ge=1, le=100),
    from_: str | None = Query(None, alias="from", max_length=64),
) -> PageParams:
    """The logs' paging: `from` is a log_id (Auth0's log checkpoint), not an offset."""
    params = PageParams(page, per_page, include_totals, None, None)
    if take is not None or from_ is not None:
        params.checkpoint, params.per_page, params.cursor = True, take or 50, from_
    return params


def list_body(collection: str, page: Page, items: list[dict[str, Any]], params: PageParams, *, length: bool = True) -> Any:
    """The list as Auth0 answers it. `length=False` for the listings whose totals Auth0 gives as
    `start, limit, total` only (roles, their permissions and users, a user's roles and permissions)."""
    if params.checkpoint:
        body: dict[str, Any] = {collection: items}
        if page.start + len(items) < page.total:
            body["next"] = str(page.start + len(items))
        return body
    if not params.include_totals:
        return items
    if not length:
        return {collection: items, "start": page.start, "limit": page.limit, "total": page.total}
    return {collection: items, "start": page.start, "limit": page.limit, "length": len(items), "total": page.total}
