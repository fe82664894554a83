"""Paged listings, headless, against the real embedded backend: which pages are fetched when
Next / Prev / Load all are clicked, filters, page sizes, ``.frame``, the text form."""

from __future__ import annotations

import html
import sys

import pytest
from flows import unique, upload

from amlmm_magics.notebook import frontend, widgets
from amlmm_magics.notebook.listing import (
    FilterError,
    Listing,
    ListingWidget,
    TextListing,
    pager_factory,
    parse_filter,
)

MODELS = 12


@pytest.fixture(scope="module")
def models(local):
    """12 versions of one uniquely named model (listed newest first); versions 3, 6, 9, 12
    tagged stage=prod."""
    name = unique("wlist")
    url = upload(local, b"weights", "w.bin")
    for i in range(1, MODELS + 1):
        local.client.register_model(name=name, url=url, mime_type="application/octet-stream",
                                    tags=["stage=prod"] if i % 3 == 0 else ["stage=dev"])
    return name


class Counting:
    """A pager factory that records every page request its pagers make."""

    def __init__(self, client, kind):
        self.base = pager_factory(client, kind)
        self.requests: list[tuple[str, object]] = []
        self.listings: list[tuple[int | None, dict]] = []

    def __call__(self, count, filters):
        self.listings.append((count, dict(filters)))
        pager = self.base(count, filters)
        first, following = pager._get_first, pager._get_next

        def get_first(token):
            self.requests.append(("first", token))
            return first(token)

        def get_next(link):
            self.requests.append(("next", link))
            return following(link)

        pager._get_first, pager._get_next = get_first, get_next
        return pager


def versions(widget):
    return [int(v) for v in widget.listing.page_frame()["version"]]


def rows_in_table(markup):
    body = markup.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in markup else ""
    return body.count("<tr")


def status(widget):
    return html.unescape(widget.status.value)


def test_next_prev_load_all_fetch_only_what_is_new(local, models):
    pages = Counting(local.client, "model")
    w = ListingWidget(Listing(pages, "model", page_size=5, filters={"name": models}))
    assert pages.requests == [("first", None)]
    assert pages.listings == [(5, {"name": models})]
    assert versions(w) == [12, 11, 10, 9, 8]
    assert status(w).count("page 1 of ?, 5 rows so far") == 1
    assert rows_in_table(w.table.value) == 5 and "table" in w.table.value
    assert w.prev_button.disabled and not w.next_button.disabled

    w.next_button.click()
    assert [kind for kind, _ in pages.requests] == ["first", "next"]
    assert versions(w) == [7, 6, 5, 4, 3]
    assert "page 2 of ?, 10 rows so far" in status(w)
    assert not w.prev_button.disabled

    w.prev_button.click()  # cached: no request
    assert len(pages.requests) == 2
    assert versions(w) == [12, 11, 10, 9, 8]
    assert "page 1 of ?, 10 rows so far" in status(w)

    w.next_button.click()  # cached too
    assert len(pages.requests) == 2 and versions(w) == [7, 6, 5, 4, 3]

    w.next_button.click()  # the last page: its nextLink is absent
    assert len(pages.requests) == 3
    assert versions(w) == [2, 1]
    assert "page 3 of 3, 12 rows in all" in status(w)
    assert w.next_button.disabled and w.all_button.disabled

    w.all_button.click()  # everything is here already
    assert len(pages.requests) == 3
    frame = w.frame
    assert list(frame["version"]) == list(range(MODELS, 0, -1))  # newest first
    assert list(w.listing.page_frame().index) == [10, 11]  # row numbers in the listing


def test_load_all_fetches_the_rest_once(local, models):
    pages = Counting(local.client, "model")
    w = ListingWidget(Listing(pages, "model", page_size=5, filters={"name": models}))
    w.next_button.click()
    w.all_button.click()
    assert [kind for kind, _ in pages.requests] == ["first", "next", "next"]
    assert len(w.frame) == MODELS and w.listing.complete
    assert "page 2 of 3, 12 rows in all" in status(w)
    w.all_button.click()
    w.next_button.click()
    w.prev_button.click()
    w.prev_button.click()
    assert len(pages.requests) == 3
    assert versions(w) == [12, 11, 10, 9, 8]


def test_filter_box_and_page_size_start_a_new_listing(local, models):
    pages = Counting(local.client, "model")
    w = ListingWidget(Listing(pages, "model", page_size=5, filters={"name": models}))
    w.filter.value = f"{models} tag=stage=prod"
    assert pages.listings[-1] == (5, {"name": models, "tag": "stage=prod"})
    assert versions(w) == [12, 9, 6, 3]
    assert "page 1 of 1, 4 rows in all" in status(w)

    w.page_size.value = 10
    assert pages.listings[-1] == (10, {"name": models, "tag": "stage=prod"})
    w.filter.value = models
    assert pages.listings[-1] == (10, {"name": models})
    assert versions(w) == list(range(12, 2, -1))
    w.next_button.click()
    assert versions(w) == [2, 1] and "page 2 of 2" in status(w)

    w.filter.value = "nosuchfilter=1"
    assert "unknown filter 'nosuchfilter'" in status(w)
    assert pages.listings[-1] == (10, {"name": models})  # the listing stays as it was

    w.filter.value = unique("nothing-called-this")
    assert "no models match the filter" in status(w)
    assert w.frame.empty and w.next_button.disabled


def test_frame_holds_only_what_is_loaded(local, models):
    w = ListingWidget(Listing(pager_factory(local.client, "model"), "model", page_size=5,
                              filters={"name": models}))
    assert len(w.frame) == 5
    w.next_button.click()
    assert len(w.frame) == 10
    frame = w.frame
    frame["version"] = 0  # a copy: the listing's own is untouched
    assert len(w.frame) == 10 and 0 not in set(w.frame["version"])
    assert "url" in w.frame.columns and not any("sig=" in u for u in w.frame["url"])


def test_parse_filter_maps_to_the_api_filters():
    assert parse_filter("model", "iris") == {"name": "iris"}
    assert parse_filter("model", "tag=stage=prod") == {"tag": "stage=prod"}
    assert parse_filter("manifest", "m1 modelId=abc") == {"manifestName": "m1",
                                                          "modelId": "abc"}
    assert parse_filter("image", "mf") == {"manifestName": "mf"}
    assert parse_filter("image", "manifest_id=X") == {"manifestId": "X"}
    assert parse_filter("service", "svc imageid=I") == {"serviceName": "svc", "imageId": "I"}
    assert parse_filter("deployment", "S1") == {"serviceId": "S1"}
    assert parse_filter("model", "  ") == {}
    assert parse_filter("model", "'a b'") == {"name": "a b"}
    for bad in ("a b", "tag=", "color=red", "'open"):
        with pytest.raises(FilterError):
            parse_filter("model", bad)


def test_every_kind_lists_through_the_client(local, models):
    for kind in widgets.KINDS:
        listing = Listing(pager_factory(local.client, kind), kind, page_size=3)
        listing.first()
        assert listing.error is None, (kind, listing.error)
        assert list(listing.frame.columns)[:1] in (["id"],) or listing.frame.empty


def test_errors_show_inline_and_the_listing_can_go_on(local, models):
    failing = {"on": False}
    base = pager_factory(local.client, "model")

    def flaky(count, filters):
        pager = base(count, filters)
        following = pager._get_next

        def get_next(link):
            if failing["on"]:
                raise ConnectionError("connection reset by 127.0.0.1")
            return following(link)

        pager._get_next = get_next
        return pager

    w = ListingWidget(Listing(flaky, "model", page_size=5, filters={"name": models}))
    failing["on"] = True
    w.next_button.click()
    assert "connection reset" in status(w) and "page 1 of ?" in status(w)
    assert versions(w) == [12, 11, 10, 9, 8]
    failing["on"] = False
    w.next_button.click()  # resumes from page 1's continuation token
    assert versions(w) == [7, 6, 5, 4, 3] and "connection reset" not in status(w)


def test_text_listing_is_a_dataframe_with_a_footer(local, models):
    shown = TextListing(Listing(pager_factory(local.client, "model"), "model", page_size=5,
                                filters={"name": models}))
    markup = shown._repr_html_()
    assert "<table" in markup and rows_in_table(markup) == 5
    assert "page 1 of ?, 5 rows so far; .next() for more" in markup
    text = repr(shown)
    assert text.splitlines()[-1] == "page 1 of ?, 5 rows so far; .next() for more, " \
                                    ".load_all() for all"
    assert shown.next() is shown  # a cell ending in `models.next()` shows page 2
    assert repr(shown).splitlines()[-1].startswith("page 2 of ?, 10 rows so far")
    assert shown.load_all().prev() is shown
    assert repr(shown).splitlines()[-1] == "page 1 of 3, 12 rows in all"
    assert len(shown.frame) == MODELS
    assert "None" not in shown._repr_html_() and "&lt;NA&gt;" not in shown._repr_html_()


def test_make_listing_follows_the_front_end(local, models, monkeypatch):
    monkeypatch.setenv(frontend.ENV, "text")
    assert isinstance(widgets.make_listing(local.client, "model", page_size=5,
                                           filter=models), TextListing)
    monkeypatch.setenv(frontend.ENV, "widget")
    w = widgets.make_listing(local.client, "model", page_size=5, filter=models)
    assert isinstance(w, ListingWidget)
    assert w.filter.value == models and versions(w) == [12, 11, 10, 9, 8]
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(ValueError):
        widgets.make_listing(local.client, "thing")
    w.close()
    assert w.widget.comm is None and w.next_button.comm is None


def test_without_ipywidgets_everything_is_text(local, models, monkeypatch):
    """Even forced to widgets, a kernel without ipywidgets gets the text forms (importing
    ipywidgets would raise here)."""
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setenv(frontend.ENV, "widget")
    with pytest.raises(ImportError):
        import ipywidgets  # noqa: F401
    shown = widgets.make_listing(local.client, "model", page_size=5, filter=models)
    assert isinstance(shown, TextListing) and len(shown.frame) == 5
    assert widgets.widget_progress_factory(local.client) is None
    assert type(widgets.make_panel(local.client, page_size=1)).__name__ == "TextPanel"
