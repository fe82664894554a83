"""Paginated listings: one page at a time as a DataFrame, fetched lazily by ``nextLink``.

:class:`Listing` is the model (no ipywidgets): it wraps a pager factory
``(count, filters) -> ItemPager``, caches the pages it fetched (going back never asks the
service again), and knows whether the last page has been seen. :class:`ListingWidget` puts
Prev / Next / Load all buttons, a page size selector, a filter box and a status line
around it; :class:`TextListing` is the same listing as HTML/text outputs for front ends
without widgets (one page as a DataFrame plus a footer line).

Filters: the filter box holds the value of the listing's main API filter (models: ``name``;
manifests and images: ``manifestName``; services: ``serviceName``; deployments:
``serviceId``), and ``key=value`` words for the others (``tag=stage=prod``,
``modelId=...``); keys are the API's query parameter names (snake_case works too).
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from amlmm_magics.redact import redact_text

KINDS = ("model", "manifest", "image", "service", "deployment")
PAGE_SIZES = (5, 10, 20, 50, 100, 500)

# API query parameter → the client's keyword argument, per resource kind; the first one is
# what a bare word in the filter box means.
FILTERS: dict[str, dict[str, str]] = {
    "model": {"name": "name", "tag": "tag"},
    "manifest": {"manifestName": "manifest_name", "modelId": "model_id"},
    "image": {"manifestName": "manifest_name", "manifestId": "manifest_id"},
    "service": {
        "serviceName": "service_name",
        "modelId": "model_id",
        "modelName": "model_name",
        "manifestId": "manifest_id",
        "manifestName": "manifest_name",
        "imageId": "image_id",
        "computeResourceId": "compute_resource_id",
    },
    "deployment": {"serviceId": "service_id"},
}

PagerFactory = Callable[[int | None, dict[str, str]], Any]


class FilterError(ValueError):
    """A filter box text the listing's API cannot express."""


def primary_filter(kind: str) -> str:
    return next(iter(FILTERS[kind]))


def parse_filter(kind: str, text: str) -> dict[str, str]:
    """``"iris tag=stage=prod"`` → ``{"name": "iris", "tag": "stage=prod"}`` for models."""
    known = FILTERS.get(kind, {})
    by_lower = {k.lower(): k for k in known} | {v.lower(): k for k, v in known.items()}
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise FilterError(f"cannot read the filter: {exc}") from None
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            key, value = primary_filter(kind) if known else "", word
            if not key:
                raise FilterError(f"{kind}s cannot be filtered")
        else:
            name = by_lower.get(key.strip().lower())
            if name is None:
                names = ", ".join(known) or "none"
                raise FilterError(f"unknown filter {key!r} for {kind}s; known: {names}")
            key = name
        if not value:
            raise FilterError(f"filter {key!r} has no value")
        if key in out:
            raise FilterError(f"filter {key!r} given twice")
        out[key] = value
    return out


def pager_factory(client: Any, kind: str) -> PagerFactory:
    """``(count, filters) -> ItemPager`` over ``client.list_<kind>s``; filters use the API's
    query parameter names."""
    kwargs_of = FILTERS[kind]
    method = getattr(client, f"list_{kind}s")

    def make(count: int | None, filters: dict[str, str]) -> Any:
        kwargs = {kwargs_of[k]: v for k, v in filters.items()}
        if kind != "deployment":  # the deployments listing takes no page size
            kwargs["count"] = count
        return method(**kwargs)

    return make


def short_error(exc: BaseException) -> str:
    """One line for an error shown inline: no traceback, secrets masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return redact_text(text)


class Listing:
    """One listing of one resource kind, fetched a page at a time and cached.

    ``next()`` fetches a page only the first time it is reached; ``prev()`` never fetches;
    ``load_all()`` fetches every page not fetched yet. ``frame`` is the DataFrame of every
    row loaded so far. Changing ``page_size`` or ``filters`` starts a new listing.
    """

    def __init__(self, factory: PagerFactory, kind: str, *, page_size: int = 10,
                 filters: Mapping[str, str] | None = None) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.factory = factory
        self.kind = kind
        self._page_size = page_size
        self._filters = dict(filters or {})
        self.requests = 0  # pages fetched since the listing (re)started
        self.error: str | None = None  # the last fetch's failure, one line
        self._reset()

    # -- state ----------------------------------------------------------------------------
    def _reset(self) -> None:
        self.pages: list[Any] = []  # Page objects (lists with .next_link)
        self.index = 0
        self.complete = False  # the last page has been fetched
        self._iter: Iterator[Any] | None = None
        self._frame_cache: Any = None
        self.error = None

    @property
    def page_size(self) -> int:
        return self._page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        if value < 1:
            raise ValueError("page_size must be at least 1")
        if value != self._page_size:
            self._page_size = value
            self.restart()

    @property
    def filters(self) -> dict[str, str]:
        return dict(self._filters)

    @filters.setter
    def filters(self, value: Mapping[str, str]) -> None:
        self._filters = dict(value)
        self.restart()

    def set_filter_text(self, text: str) -> None:
        """Parse a filter box's text (raises :class:`FilterError`) and restart."""
        self.filters = parse_filter(self.kind, text)

    def restart(self) -> None:
        """Forget the fetched pages and fetch the first page again."""
        self._reset()
        self.requests = 0
        self._fetch()

    @property
    def rows_loaded(self) -> int:
        return sum(len(p) for p in self.pages)

    @property
    def page_count(self) -> int | None:
        """How many pages the listing has, once the last one is known."""
        return len(self.pages) if self.complete else None

    @property
    def items(self) -> list[Any]:
        """Every resource loaded so far, in listing order."""
        return [item for page in self.pages for item in page]

    @property
    def current(self) -> list[Any]:
        """The resources of the page shown."""
        return self.pages[self.index] if self.pages else []

    @property
    def has_prev(self) -> bool:
        return self.index > 0

    @property
    def has_next(self) -> bool:
        return self.index + 1 < len(self.pages) or not self.complete

    # -- fetching -------------------------------------------------------------------------
    def _fetch(self) -> bool:
        """Fetch the next page not fetched yet; False when there is none or it failed."""
        if self.complete:
            return False
        self.error = None
        try:
            if self._iter is None:
                token = None
                if self.pages:
                    # Resuming after a failed fetch: from the last good page's token.
                    token = self.pages[-1].continuation_token
                    if token is None:
                        raise RuntimeError("the listing cannot be resumed here; change the "
                                           "filter or page size to start it again")
                pager = self.factory(self._page_size, self._filters)
                # by_page(token) first yields the page the token names: the one wanted.
                self._iter = iter(pager.by_page(continuation_token=token))
            self.requests += 1
            page = next(self._iter)
        except StopIteration:
            self.complete = True
            return False
        except Exception as exc:
            self.error = short_error(exc)
            self._iter = None  # a generator that raised is finished; resume from a token
            return False
        if self.pages and not page:
            # An empty page after others (a listing that shrank): nothing more to show.
            self.complete = True
            return False
        self.pages.append(page)
        self._frame_cache = None
        if not getattr(page, "next_link", None):
            self.complete = True
        return True

    def first(self) -> list[Any]:
        if not self.pages:
            self._fetch()
        self.index = 0
        return self.current

    def next(self) -> list[Any]:
        """Show the following page, fetching it if it has not been fetched yet."""
        if self.index + 1 < len(self.pages) or self._fetch():
            self.index += 1
        return self.current

    def prev(self) -> list[Any]:
        """Show the page before; never asks the service."""
        if self.index > 0:
            self.index -= 1
        return self.current

    def load_all(self) -> int:
        """Fetch every page not fetched yet; answers how many rows are loaded."""
        if not self.pages:
            self._fetch()
        while not self.complete and self._fetch():
            pass
        return self.rows_loaded

    # -- views ----------------------------------------------------------------------------
    @property
    def frame(self) -> Any:
        """The DataFrame of every row loaded so far (``resources_to_frame``)."""
        from amlmm_magics.api.frames import resources_to_frame

        if self._frame_cache is None:
            self._frame_cache = resources_to_frame(self.items, self.kind)
        return self._frame_cache.copy()

    def page_frame(self) -> Any:
        """The DataFrame of the page shown, indexed by row number in the listing."""
        from amlmm_magics.api.frames import resources_to_frame

        frame = resources_to_frame(self.current, self.kind)
        start = sum(len(p) for p in self.pages[: self.index])
        frame.index = range(start, start + len(frame))
        return frame

    def status(self) -> str:
        """``page K of ?, N rows so far`` (``of M`` once the last page is known)."""
        if not self.rows_loaded:
            if self.error or not self.complete:
                return f"no {self.kind}s loaded"
            return f"no {self.kind}s" + (" match the filter" if self._filters else "")
        total = "?" if not self.complete else str(len(self.pages))
        rows = self.rows_loaded
        text = f"page {self.index + 1} of {total}, {rows} row{'s' if rows != 1 else ''}"
        return text + (" so far" if not self.complete else " in all")

    def table_html(self) -> str:
        """The page shown as an HTML table (escaped; listings hold no SAS signatures)."""
        frame = self.page_frame()
        if frame.empty:
            return f"<p class='amlmm-empty'>{html.escape(self.status())}</p>"
        shown = frame.astype(object).where(frame.notna(), "")  # blanks, not None/<NA>
        return redact_text(shown.to_html(escape=True, border=0,
                                         classes=[f"amlmm-{self.kind}s"]))

    def footer(self) -> str:
        more = "" if self.complete else "; .next() for more, .load_all() for all"
        return self.status() + more

    def __repr__(self) -> str:
        return f"<Listing of {self.kind}s: {self.status()}>"


def close_tree(widget: Any) -> None:
    """Close a widget and every widget inside it (``Widget.close_all`` closes them all)."""
    for child in list(getattr(widget, "children", ()) or ()):
        close_tree(child)
    widget.close()


def _button(ipw: Any, label: str, tooltip: str, icon: str) -> Any:
    return ipw.Button(description=label, tooltip=tooltip, icon=icon,
                      layout=ipw.Layout(width="auto"))


class ListingWidget:
    """A :class:`Listing` with Prev / Next / Load all, a page size selector, a filter box and
    a status line; ``.widget`` is the ipywidgets box, ``.frame`` what has been loaded."""

    def __init__(self, listing: Listing, *, filter_text: str = "", load: bool = True,
                 on_page: Callable[[ListingWidget], None] | None = None) -> None:
        import ipywidgets as ipw

        self.listing = listing
        self._on_page = [on_page] if on_page else []
        self.prev_button = _button(ipw, "Prev", "the page before (no request)", "arrow-left")
        self.next_button = _button(ipw, "Next", "the next page", "arrow-right")
        self.all_button = _button(ipw, "Load all", "fetch every remaining page", "download")
        self.refresh_button = _button(ipw, "", "list again from the first page", "refresh")
        sizes = sorted({*PAGE_SIZES, listing.page_size})
        self.page_size = ipw.Dropdown(options=sizes, value=listing.page_size,
                                      description="rows", layout=ipw.Layout(width="9em"),
                                      style={"description_width": "3em"})
        self.filter = ipw.Text(
            value=filter_text, placeholder=f"{primary_filter(listing.kind)}, or key=value",
            description="filter", continuous_update=False, layout=ipw.Layout(width="22em"),
            style={"description_width": "3em"})
        self.status = ipw.HTML(layout=ipw.Layout(margin="0 0 0 1em"))
        self.table = ipw.HTML(layout=ipw.Layout(overflow="auto"))
        self.prev_button.on_click(lambda _: self._act(self.listing.prev))
        self.next_button.on_click(lambda _: self._act(self.listing.next))
        self.all_button.on_click(lambda _: self._act(self.listing.load_all))
        self.refresh_button.on_click(lambda _: self._act(self.listing.restart))
        self.page_size.observe(self._page_size_changed, names="value")
        self.filter.observe(self._filter_changed, names="value")
        controls = ipw.HBox([self.prev_button, self.next_button, self.all_button,
                             self.refresh_button, self.page_size, self.filter, self.status],
                            layout=ipw.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = ipw.VBox([controls, self.table])
        self.widget.add_class("amlmm-listing")
        self._filter_error: str | None = None
        self.loaded = False
        if load:
            self.load()

    def load(self) -> None:
        """Fetch the first page (once) and draw it."""
        if not self.loaded:
            self.loaded = True
            if not self.listing.pages and not self.listing.complete:
                self.listing.first()
        self.render()

    # -- events ---------------------------------------------------------------------------
    def on_page(self, callback: Callable[[ListingWidget], None]) -> None:
        """Call ``callback(self)`` whenever the page shown changes."""
        self._on_page.append(callback)

    def _act(self, action: Callable[[], Any]) -> None:
        action()
        self.render()

    def _page_size_changed(self, change: Mapping[str, Any]) -> None:
        self.listing.page_size = int(change["new"])
        self.render()

    def _filter_changed(self, change: Mapping[str, Any]) -> None:
        try:
            filters = parse_filter(self.listing.kind, change["new"])
        except FilterError as exc:
            self._filter_error = str(exc)
        else:
            self._filter_error = None
            self.listing.filters = filters
        self.render()

    # -- drawing --------------------------------------------------------------------------
    def render(self) -> None:
        listing = self.listing
        self.prev_button.disabled = not listing.has_prev
        self.next_button.disabled = not listing.has_next
        self.all_button.disabled = listing.complete
        status = html.escape(listing.status())
        error = self._filter_error or listing.error
        if error:
            status += (f" <span class='amlmm-error' style='color:#b00020'>"
                       f"{html.escape(error)}</span>")
        self.status.value = f"<span class='amlmm-status'>{status}</span>"
        self.table.value = listing.table_html()
        for callback in list(self._on_page):
            callback(self)

    # -- conveniences ---------------------------------------------------------------------
    @property
    def frame(self) -> Any:
        return self.listing.frame

    @property
    def current(self) -> list[Any]:
        return self.listing.current

    def close(self) -> None:
        close_tree(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<ListingWidget of {self.listing.kind}s: {self.listing.status()}>"


class TextListing:
    """The listing for front ends without widgets: shown (as a cell's result) as the page
    shown as a DataFrame, in HTML and text, with a footer line. ``next()``, ``prev()`` and
    ``load_all()`` move and answer the listing, so ``models.next()`` as a cell's last line
    shows the next page."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        if not listing.pages and not listing.complete:
            listing.first()

    @property
    def frame(self) -> Any:
        return self.listing.frame

    def next(self) -> TextListing:
        self.listing.next()
        return self

    def prev(self) -> TextListing:
        self.listing.prev()
        return self

    def load_all(self) -> TextListing:
        self.listing.load_all()
        return self

    def _footer(self) -> str:
        error = f" ({self.listing.error})" if self.listing.error else ""
        return self.listing.footer() + error

    def _repr_html_(self) -> str:
        return (self.listing.table_html()
                + f"<p class='amlmm-footer'>{html.escape(self._footer())}</p>")

    def __repr__(self) -> str:
        frame = self.listing.page_frame()
        body = frame.to_string() if not frame.empty else ""
        return redact_text((body + "\n" if body else "") + self._footer())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))
