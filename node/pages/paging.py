"""Long lists on pages come a page at a time: nothing renders thousands of rows at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

#: Rows per page unless a list says otherwise.
PAGE_SIZE = 50


@dataclass(frozen=True)
class Paged(Generic[T]):
    """One page of a list: its rows, its number (from 1), how many pages and rows in all."""

    rows: list[T]
    page: int
    pages: int
    total: int
    size: int

    @property
    def first(self) -> int:
        """The 1-based position of the page's first row (0 on an empty list)."""
        return (self.page - 1) * self.size + 1 if self.total else 0

    @property
    def last(self) -> int:
        return (self.page - 1) * self.size + len(self.rows)


def paginate(rows: Sequence[T], page: int, size: int = PAGE_SIZE) -> Paged[T]:
    """Page ``page`` of ``rows`` (clamped to the pages there are)."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    return Paged(list(rows[start : start + size]), page, pages, len(rows), size)


def nav(
    query: Mapping[str, str] | Sequence[tuple[str, str]], param: str, paged: Paged[T]
) -> dict[str, str | None]:
    """Links to the previous and next page: this request's query (a mapping, or pairs when a
    parameter repeats) with ``param`` changed."""
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)

    def link(page: int) -> str:
        wanted = [(k, v) for k, v in pairs if k != param]
        if page > 1:
            wanted.append((param, str(page)))
        return "?" + urlencode(wanted) if wanted else "?"

    return {
        "prev": link(paged.page - 1) if paged.page > 1 else None,
        "next": link(paged.page + 1) if paged.page < paged.pages else None,
    }
