"""Pagers for the ``list_*`` operations: lazy iteration across pages by ``nextLink``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from amlmm_magics.api.errors import ModelManagementError
from amlmm_magics.api.resources import Resource

if TYPE_CHECKING:
    import pandas as pd

SKIP_TOKEN = "$skipToken"


class Page(list):
    """One page of resources, with the link (and token) to the next one, if any."""

    def __init__(self, items: list[Resource], next_link: str | None) -> None:
        super().__init__(items)
        self.next_link = next_link

    @property
    def continuation_token(self) -> str | None:
        if not self.next_link:
            return None
        values = parse_qs(urlsplit(self.next_link).query).get(SKIP_TOKEN)
        return values[0] if values else None


def parse_page(data: Any) -> Page:
    """A page from a Paginated*List body, or from a bare array (the deployments listing).

    ``data`` comes from ``parse_json``, so its objects are Resources already.
    """
    if isinstance(data, list):
        return Page(data, None)
    if not isinstance(data, dict):
        raise ModelManagementError(f"Unexpected listing body of type {type(data).__name__}.")
    value = data.get("value") or []
    if not isinstance(value, list):
        raise ModelManagementError("Unexpected listing body: 'value' is not an array.")
    return Page(value, data.get("nextLink") or None)


class ItemPager:
    """Iterate resources across pages; ``.by_page()`` for pages; ``.to_frame()`` for pandas.

    Nothing is requested until iteration starts; each page is requested when reached.
    """

    def __init__(
        self,
        kind: str,
        get_first: Callable[[str | None], Any],
        get_next: Callable[[str], Any],
    ) -> None:
        self.kind = kind
        self._get_first = get_first
        self._get_next = get_next

    def by_page(self, continuation_token: str | None = None) -> Iterator[Page]:
        """Yield pages; ``continuation_token`` (a page's ``$skipToken``) resumes a listing."""
        page = parse_page(self._get_first(continuation_token))
        yield page
        seen = set()
        while page.next_link:
            if page.next_link in seen:
                raise ModelManagementError(
                    f"The service answered the same nextLink twice while listing {self.kind}s."
                )
            seen.add(page.next_link)
            page = parse_page(self._get_next(page.next_link))
            yield page

    def __iter__(self) -> Iterator[Resource]:
        for page in self.by_page():
            yield from page

    def take(self, n: int) -> list[Resource]:
        """The first ``n`` items, requesting only the pages needed."""
        return list(islice(self, n))

    def to_frame(self, max_items: int | None = None) -> pd.DataFrame:
        """A DataFrame of the items (all of them, or the first ``max_items``)."""
        from amlmm_magics.api.frames import resources_to_frame

        items = list(self) if max_items is None else self.take(max_items)
        return resources_to_frame(items, self.kind)

    def __repr__(self) -> str:
        return f"<ItemPager of {self.kind}s>"
