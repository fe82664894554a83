"""The ``%amlmm panel`` dashboard: a tab per resource kind, details, service actions.

Each tab is a paged listing (``listing.py``) fetched when the tab is first opened, a row
selector (a ``Dropdown`` of the page's resources) and a details view of the selected
resource (secrets masked). The services tab can also score a JSON payload (POST to the
service's ``scoringUri`` with its primary key), show its keys (masked; Reveal shows them),
regenerate a key, and delete the service after a confirmation. Every action shows its
result, or its error as one line, right below it.

:class:`TextPanel` is the form without widgets: the first page of each kind as a DataFrame
with a footer line.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from amlmm_magics.notebook.listing import (
    KINDS,
    Listing,
    ListingWidget,
    TextListing,
    close_tree,
    pager_factory,
    short_error,
)
from amlmm_magics.redact import mask_secret, redact_text, redact_value

TITLES = {"model": "Models", "manifest": "Manifests", "image": "Images",
          "service": "Services", "deployment": "Deployments"}
HIDDEN = {"display": "none"}
NO_ROW = ("(choose a row)", "")  # "" rather than None: a Dropdown shows None as blank


def row_label(kind: str, item: dict[str, Any]) -> str:
    """How a resource is named in the row selector."""
    short = str(item.get("id", ""))[:8]
    if kind == "deployment":
        return f"{item.get('serviceName', '?')} ({item.get('status', '?')}) · {short}"
    name = item.get("name", "?")
    version = item.get("version")
    state = item.get("state") or item.get("creationState")
    label = f"{name}:{version}" if version is not None else str(name)
    return f"{label}{f' ({state})' if state else ''} · {short}"


def details_html(item: dict[str, Any] | None) -> str:
    if not item:
        return ""
    text = json.dumps(redact_value(dict(item)), indent=2, default=str)
    return ("<pre class='amlmm-details' style='max-height:24em;overflow:auto;font-size:85%'>"
            + html.escape(text) + "</pre>")


def ok_html(text: str) -> str:
    return f"<div class='amlmm-ok'>{html.escape(redact_text(text))}</div>"


def error_html(text: str) -> str:
    return (f"<div class='amlmm-error' style='color:#b00020'>"
            f"{html.escape(redact_text(text))}</div>")


class ResourceTab:
    """One tab: listing, row selector, details."""

    def __init__(self, client: Any, kind: str, page_size: int) -> None:
        import ipywidgets as ipw

        self.client = client
        self.kind = kind
        self.listing = ListingWidget(Listing(pager_factory(client, kind), kind,
                                             page_size=page_size), load=False)
        self.select = ipw.Dropdown(options=[NO_ROW], value="",
                                   description="row", layout=ipw.Layout(width="40em"),
                                   style={"description_width": "3em"})
        self.select.add_class("amlmm-row-select")
        self.details = ipw.HTML()
        self.select.observe(self._selected, names="value")
        self.listing.on_page(self._page_changed)
        self.extra: list[Any] = []
        self.widget = ipw.VBox([self.listing.widget, self.select, self.details])
        self.widget.add_class(f"amlmm-tab-{kind}s")

    @property
    def selected(self) -> dict[str, Any] | None:
        wanted = self.select.value
        if not wanted:
            return None
        return next((i for i in self.listing.current if i.get("id") == wanted), None)

    def select_id(self, resource_id: str) -> None:
        self.select.value = resource_id

    def _page_changed(self, _: ListingWidget) -> None:
        options = [NO_ROW] + [
            (row_label(self.kind, item), item.get("id")) for item in self.listing.current]
        previous = self.select.value
        self.select.options = options
        ids = {value for _, value in options}
        self.select.value = previous if previous in ids else ""
        self._show_details()

    def _selected(self, _: Any) -> None:
        self._show_details()
        self.on_select()

    def _show_details(self) -> None:
        self.details.value = details_html(self.selected)

    def on_select(self) -> None:
        """A row was chosen (or unchosen)."""


class ServiceTab(ResourceTab):
    """The services tab, with score / keys / regenerate / delete."""

    def __init__(self, client: Any, page_size: int,
                 http_post: Callable[..., Any] | None = None) -> None:
        import ipywidgets as ipw

        super().__init__(client, "service", page_size)
        self._http_post = http_post
        self._keys: dict[str, Any] | None = None
        self.payload = ipw.Textarea(placeholder="JSON payload, e.g. [[5.1, 3.5, 1.4, 0.2]]",
                                    layout=ipw.Layout(width="40em", height="5em"))
        self.score_button = ipw.Button(description="Score", icon="play")
        self.score_result = ipw.HTML()
        self.keys_button = ipw.Button(description="Show keys", icon="key")
        self.reveal = ipw.ToggleButton(description="Reveal", value=False, icon="eye",
                                       tooltip="show the keys unmasked")
        self.key_type = ipw.Dropdown(options=["Primary", "Secondary"], value="Primary",
                                     layout=ipw.Layout(width="9em"))
        self.regenerate_button = ipw.Button(description="Regenerate", icon="refresh")
        self.keys_view = ipw.HTML()
        self.delete_button = ipw.Button(description="Delete", button_style="danger",
                                        icon="trash")
        self.confirm_button = ipw.Button(description="Really delete?", button_style="danger",
                                         layout=ipw.Layout(width="auto", **HIDDEN))
        self.cancel_button = ipw.Button(description="Cancel", layout=ipw.Layout(**HIDDEN))
        self.delete_result = ipw.HTML()
        self.score_button.on_click(lambda _: self.score())
        self.keys_button.on_click(lambda _: self.show_keys())
        self.reveal.observe(lambda _: self._render_keys(), names="value")
        self.regenerate_button.on_click(lambda _: self.regenerate())
        self.delete_button.on_click(lambda _: self.ask_delete())
        self.confirm_button.on_click(lambda _: self.delete())
        self.cancel_button.on_click(lambda _: self._hide_confirm())
        self.actions = ipw.VBox([
            ipw.HTML("<b>Score</b>"), self.payload, self.score_button, self.score_result,
            ipw.HTML("<b>Keys</b>"),
            ipw.HBox([self.keys_button, self.reveal, self.key_type, self.regenerate_button]),
            self.keys_view,
            ipw.HTML("<b>Delete</b>"),
            ipw.HBox([self.delete_button, self.confirm_button, self.cancel_button]),
            self.delete_result,
        ], layout=ipw.Layout(**HIDDEN))
        self.actions.add_class("amlmm-service-actions")
        self.widget.children = (*self.widget.children, self.actions)

    # -- selection --------------------------------------------------------------------------
    def on_select(self) -> None:
        self._keys = None
        self.reveal.value = False
        for view in (self.score_result, self.keys_view, self.delete_result):
            view.value = ""
        self._hide_confirm()
        self.actions.layout.display = None if self.selected else "none"

    def _service(self) -> dict[str, Any]:
        service = self.selected
        if service is None:
            raise LookupError("choose a service first")
        return service

    def _attempt(self, view: Any, what: str, action: Callable[[], str]) -> bool:
        try:
            view.value = action()
        except Exception as exc:
            view.value = error_html(f"{what} failed: {short_error(exc)}")
            return False
        return True

    # -- score ------------------------------------------------------------------------------
    def score(self) -> bool:
        return self._attempt(self.score_result, "Scoring", self._score)

    def _score(self) -> str:
        service = self._service()
        text = self.payload.value.strip()
        if not text:
            raise ValueError("the payload is empty; type JSON, e.g. [[5.1, 3.5, 1.4, 0.2]]")
        try:
            json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the payload is not JSON ({exc})") from None
        uri = service.get("scoringUri")
        if not uri:
            raise ValueError(f"service {service.get('name')!r} has no scoringUri (state "
                             f"{service.get('state')})")
        key = self.client.get_service_keys(service["id"]).get("primaryKey")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        post = self._http_post
        if post is None:
            import requests

            post = requests.post
        response = post(uri, data=text.encode(), headers=headers, timeout=60)
        body = response.text
        if not 200 <= response.status_code < 300:
            first = (body.strip().splitlines() or [""])[0][:200]
            raise RuntimeError(f"HTTP {response.status_code} {first}".rstrip())
        try:
            shown = json.dumps(json.loads(body), indent=2)
        except ValueError:
            shown = body
        return ("<pre class='amlmm-score-result'>" + html.escape(redact_text(shown))
                + "</pre>")

    # -- keys -------------------------------------------------------------------------------
    def show_keys(self) -> bool:
        def fetch() -> str:
            self._keys = dict(self.client.get_service_keys(self._service()["id"]))
            return self._keys_html()
        return self._attempt(self.keys_view, "Getting the keys", fetch)

    def regenerate(self) -> bool:
        key_type = self.key_type.value

        def run() -> str:
            service = self._service()
            self._keys = dict(self.client.regenerate_service_key(service["id"], key_type))
            return ok_html(f"Regenerated the {key_type.lower()} key of "
                           f"{service.get('name')}.") + self._keys_html()
        return self._attempt(self.keys_view, f"Regenerating the {key_type.lower()} key", run)

    def _keys_html(self) -> str:
        keys = self._keys or {}
        show = (lambda v: v or "") if self.reveal.value else mask_secret
        rows = "".join(
            f"<tr><th style='text-align:left'>{label}</th><td><code class='amlmm-key'>"
            f"{html.escape(show(keys.get(field)))}</code></td></tr>"
            for label, field in (("primary", "primaryKey"), ("secondary", "secondaryKey")))
        return f"<table class='amlmm-keys'>{rows}</table>"

    def _render_keys(self) -> None:
        if self._keys is not None:
            self.keys_view.value = self._keys_html()

    # -- delete -----------------------------------------------------------------------------
    def ask_delete(self) -> bool:
        try:
            service = self._service()
        except LookupError as exc:
            self.delete_result.value = error_html(str(exc))
            return False
        self.confirm_button.description = f"Really delete {service.get('name')}?"
        self.confirm_button.layout.display = None
        self.cancel_button.layout.display = None
        self.delete_result.value = ""
        return True

    def _hide_confirm(self) -> None:
        self.confirm_button.layout.display = "none"
        self.cancel_button.layout.display = "none"

    def delete(self) -> bool:
        if self.confirm_button.layout.display == "none":
            self.delete_result.value = error_html("click Delete first, then confirm")
            return False
        self._hide_confirm()
        message: list[str] = []

        def run() -> str:
            service = self._service()
            existed = self.client.delete_service(service["id"])
            name = service.get("name")
            message.append(f"Deleted service {name}." if existed else
                           f"No service {name} any more (deleted already): nothing to do.")
            return ok_html(message[0])
        done = self._attempt(self.delete_result, "Deleting", run)
        if done:
            self.listing.listing.restart()
            self.listing.render()  # the selection goes: the row is gone
            self.delete_result.value = ok_html(message[0])
        return done


class Panel:
    """The dashboard: ``.widget`` (an ``ipywidgets.VBox`` holding a ``Tab``), ``.tabs``
    (kind → :class:`ResourceTab`), ``.services`` (the :class:`ServiceTab`)."""

    def __init__(self, client: Any, *, page_size: int = 10,
                 http_post: Callable[..., Any] | None = None) -> None:
        import ipywidgets as ipw

        self.client = client
        self.tabs: dict[str, ResourceTab] = {}
        for kind in KINDS:
            self.tabs[kind] = (ServiceTab(client, page_size, http_post) if kind == "service"
                               else ResourceTab(client, kind, page_size))
        self.tab = ipw.Tab(children=[t.widget for t in self.tabs.values()],
                           titles=[TITLES[k] for k in self.tabs])
        self.tab.observe(self._tab_changed, names="selected_index")
        account = html.escape(redact_text(str(getattr(client, "account_url", ""))))
        self.title = ipw.HTML(f"<b>Model Management account</b> <code>{account}</code>")
        self.widget = ipw.VBox([self.title, self.tab])
        self.widget.add_class("amlmm-panel")
        self.tab.selected_index = 0
        self._load(0)

    @property
    def services(self) -> ServiceTab:
        tab = self.tabs["service"]
        assert isinstance(tab, ServiceTab)
        return tab

    def open(self, kind: str) -> ResourceTab:
        """Switch to the tab of ``kind`` (loading its first page) and answer it."""
        index = list(self.tabs).index(kind)
        self.tab.selected_index = index
        self._load(index)
        return self.tabs[kind]

    def _tab_changed(self, change: Any) -> None:
        if change.get("new") is not None:
            self._load(change["new"])

    def _load(self, index: int) -> None:
        list(self.tabs.values())[index].listing.load()

    def close(self) -> None:
        close_tree(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<Panel of {getattr(self.client, 'account_url', 'an account')}>"


class TextPanel:
    """The panel without widgets: the first page of every kind, with footers.
    ``.listings[kind]`` is a :class:`TextListing` (``.next()``, ``.load_all()``,
    ``.frame``)."""

    def __init__(self, client: Any, *, page_size: int = 10) -> None:
        self.client = client
        self.listings = {kind: TextListing(Listing(pager_factory(client, kind), kind,
                                                   page_size=page_size))
                         for kind in KINDS}

    def _repr_html_(self) -> str:
        return "".join(f"<h4>{TITLES[kind]}</h4>{listing._repr_html_()}"
                       for kind, listing in self.listings.items())

    def __repr__(self) -> str:
        return "\n\n".join(f"{TITLES[kind]}\n{listing!r}"
                           for kind, listing in self.listings.items())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))
