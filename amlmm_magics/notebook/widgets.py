"""ipywidgets for amlmm_magics: live progress of long operations, paged listings, the panel.

What the magics call (every function degrades to text/HTML outputs when the front end shows
no widgets; :mod:`amlmm_magics.notebook.frontend` decides, once per kernel):

- :func:`widget_progress_factory` → a :class:`ProgressWidget` (a ``ProgressReporter``:
  ``start(poller, description)``, ``update(operation)``, ``finish(outcome)``) or None when
  text progress should be used; :func:`install` plugs it into ``notebook.progress``.
- :func:`watch` (``--no-wait``): a progress widget kept up to date by its own daemon thread,
  which stops when the operation ends, when the widget is closed, or at interpreter exit.
- :func:`make_listing` / :func:`show_listing`: a paged listing (``listing.py``).
- :func:`make_panel` / :func:`show_panel`: the ``%amlmm panel`` dashboard (``panel.py``).

The progress widget is an ``ipywidgets.VBox``: a header (operation type, target name,
operation ID), a state badge, an ``IntProgress`` bar, the elapsed time and the last lines of
the build or service log. ipywidgets 8 has no indeterminate bar: while the operation runs
the bar is full with ``bar_style='info'`` (no animation, so no message per frame); it turns
``success``/``danger``/``warning`` at the end. When the operation ends the widget is replaced,
through the same display ID, by a static summary (HTML and text) that a saved notebook keeps
without widget state, and the widget is closed: one output, never two.

Importing this module does not import ipywidgets (the classes import it when built), so it
can be imported to ask whether widgets are possible.
"""

from __future__ import annotations

import atexit
import contextvars
import html
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from amlmm_magics.notebook import frontend
from amlmm_magics.notebook.listing import (
    KINDS,
    Listing,
    ListingWidget,
    PagerFactory,
    TextListing,
    close_tree,
    pager_factory,
    parse_filter,
    short_error,
)
from amlmm_magics.redact import redact_text

__all__ = [
    "KINDS",
    "Listing",
    "ListingWidget",
    "ProgressWidget",
    "TextListing",
    "make_listing",
    "make_panel",
    "show_listing",
    "show_panel",
    "stop_all",
    "watch",
    "widget_progress_factory",
]

STATES = ("NotStarted", "Running", "Succeeded", "Failed", "Cancelled")
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
# (badge colour, bar style, bar value) per state.
LOOK = {
    "NotStarted": ("#6b7280", "", 0),
    "Running": ("#1d4ed8", "info", 100),
    "Succeeded": ("#15803d", "success", 100),
    "Failed": ("#b91c1c", "danger", 100),
    "Cancelled": ("#b45309", "warning", 100),
    "Stopped": ("#6b7280", "warning", 100),
}
LOG_LINES = 20
MAX_POLL_FAILURES = 10
_UNSET: Any = object()


# -- where outputs go -------------------------------------------------------------------------

class Screen:
    """Shows an object under a new display ID and replaces it later (IPython's display)."""

    def show(self, obj: Any) -> Any:
        from IPython.display import display

        return display(obj, display_id=True)

    def replace(self, handle: Any, bundle: dict[str, str]) -> None:
        if handle is not None:
            handle.update(bundle, raw=True)


# -- live watchers: stopped at interpreter exit -----------------------------------------------

_live: weakref.WeakSet[ProgressWidget] = weakref.WeakSet()
_live_lock = threading.Lock()


def stop_all(timeout: float = 2.0) -> int:
    """Stop every progress thread (kernel shutdown, extension unload); answers how many."""
    with _live_lock:
        widgets = list(_live)
    for w in widgets:
        w._stop.set()
    deadline = time.monotonic() + timeout
    for w in widgets:
        thread = w._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return len(widgets)


atexit.register(stop_all)


# -- the progress widget ----------------------------------------------------------------------

def _fmt_elapsed(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def _badge(state: str) -> str:
    colour = LOOK.get(state, LOOK["NotStarted"])[0]
    return (f"<span class='amlmm-badge amlmm-state-{state.lower()}' style='background:{colour};"
            f"color:white;border-radius:4px;padding:1px 8px;font-weight:600'>"
            f"{html.escape(state)}</span>")


def _resource_id(location: str | None) -> str | None:
    if not location:
        return None
    return location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None


class ProgressWidget:
    """Live progress of one ``begin_*`` operation; implements ``ProgressReporter``.

    Foreground (the magics wait): ``start(poller, description)`` shows the widget and hooks
    the poller's progress callback; a daemon thread refreshes the elapsed time and the log
    tail about once a second; ``finish(outcome)`` replaces the widget by its summary.
    Background (``--no-wait``): ``watch(poller)`` does the same but its thread also polls the
    operation and calls ``finish`` itself when the operation ends.
    """

    def __init__(self, client: Any = None, *, log_lines: int = LOG_LINES,
                 log_every: float = 1.0, tick: float = 1.0, poll_every: float = 1.0,
                 screen: Screen | None = None, http_get: Callable[..., Any] | None = None
                 ) -> None:
        import ipywidgets as ipw

        self.client = client
        self.log_lines = log_lines
        self.log_every = log_every
        self.tick = tick
        self.poll_every = poll_every
        self.screen = screen or Screen()
        self._http_get = http_get
        self.header = ipw.HTML()
        self.badge = ipw.HTML()
        self.bar = ipw.IntProgress(value=0, min=0, max=100, bar_style="",
                                   layout=ipw.Layout(width="14em"))
        self.elapsed = ipw.HTML()
        self.message = ipw.HTML()
        self.log = ipw.HTML()
        row = ipw.HBox([self.badge, self.bar, self.elapsed],
                       layout=ipw.Layout(align_items="center"))
        self.widget = ipw.VBox([self.header, row, self.message, self.log])
        self.widget.add_class("amlmm-progress")
        self.widget.observe(self._comm_changed, names="comm")
        self.poller: Any = None
        self.description = ""
        self.operation: Any = None
        self.state = "NotStarted"
        self.outcome: Any = _UNSET
        self.summary: dict[str, str] | None = None  # the bundle that replaced the widget
        self.log_tail: list[str] = []
        self.log_url: str | None = None  # where the log is (signature masked)
        self.closed = False
        self._log_fetch: Callable[[], str] | None = None
        self._log_resolved = False
        self._last_log = 0.0
        self._log_error: str | None = None
        self._handle: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._render_state()

    # -- ProgressReporter -------------------------------------------------------------------
    def start(self, poller: Any, description: str | None = None) -> None:
        """Show the widget for ``poller`` and follow it while the caller waits."""
        self._begin(poller, description, poll=False)

    def watch(self, poller: Any, description: str | None = None) -> ProgressWidget:
        """Show the widget and follow ``poller`` from a daemon thread (``--no-wait``)."""
        self._begin(poller, description, poll=True)
        return self

    def update(self, operation: Any) -> None:
        """The operation as last polled (a dict with ``state``)."""
        with self._lock:
            if self.outcome is not _UNSET:
                return
            self.operation = operation
            state = (operation or {}).get("state") or "NotStarted"
            if state != self.state:
                self.state = state
                self._render_state()
            self._render_elapsed()

    def finish(self, outcome: Any) -> None:
        """The resource made, the exception that ended waiting, or None (stopped waiting).
        Replaces the widget by the static summary; a second call does nothing."""
        with self._lock:
            if self.outcome is not _UNSET:
                return
            self.outcome = outcome
        self._stop.set()
        if self.poller is not None:
            self.poller.remove_progress_callback(self._on_poll)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        state = self._final_state(outcome)
        with self._lock:
            self.state = state
        if state in ("Failed", "Cancelled") or self._log_fetch is not None:
            self._refresh_log(force=True)  # the last lines (a failure's summary shows them)
        with self._lock:
            self._render_state()
            self._render_elapsed()
            self.summary = self.summary_bundle()
        if self._handle is not None:
            self.screen.replace(self._handle, self.summary)
        self.closed = True
        close_tree(self.widget)
        with _live_lock:
            _live.discard(self)

    # -- life -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop following the operation (it goes on) and close the widget."""
        if self.outcome is _UNSET and self.poller is not None:
            self.finish(None)
        else:
            self._stop.set()
            self.closed = True
            close_tree(self.widget)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _comm_changed(self, change: Any) -> None:
        if change.get("new") is None and self.outcome is _UNSET:
            # Closed from outside (``.widget.close()``): stop the thread, say so.
            self._stop.set()
            if self.poller is not None and self._thread is not threading.current_thread():
                self.finish(None)

    def _begin(self, poller: Any, description: str | None, *, poll: bool) -> None:
        with self._lock:
            if self.poller is not None:
                raise RuntimeError("this progress widget already follows an operation")
            self.poller = poller
            kind = str(getattr(poller, "kind", "") or "operation")
            target = getattr(poller, "target_name", None)
            self.description = description or (
                f"{kind.capitalize()} {target!r}" if target else kind.capitalize())
            self.operation = getattr(poller, "operation", None)
            self.state = getattr(poller, "state", None) or "NotStarted"
            self._render_header()
            self._render_state()
            self._render_elapsed()
        poller.add_progress_callback(self._on_poll)
        self._handle = self.screen.show(self)
        with _live_lock:
            _live.add(self)
        # The thread runs in this cell's context, so anything it displays (the summary)
        # carries this cell's parent header under ipykernel 7, not the running cell's.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run, poll), daemon=True,
            name=f"amlmm-progress-{getattr(poller, 'operation_id', '') or id(self)}")
        self._thread.start()

    def _on_poll(self, poller: Any, operation: Any) -> None:
        self.update(operation)

    def _run(self, poll: bool) -> None:
        try:
            self._loop(poll)
        except Exception as exc:  # never a traceback from a thread into some cell
            self._note(f"stopped following: {short_error(exc)}")

    def _loop(self, poll: bool) -> None:
        failures = 0
        next_poll = 0.0
        delay = self.poll_every  # grows 1.5x per poll up to 5 s, as the poller's own wait
        while not self._stop.is_set():
            if poll and time.monotonic() >= next_poll:
                try:
                    self.poller.poll()  # the callback calls update()
                    failures = 0
                    self._note(None)
                except Exception as exc:
                    failures += 1
                    self._note(f"polling failed ({failures}): {short_error(exc)}")
                    if failures >= MAX_POLL_FAILURES:
                        self.finish(exc)
                        return
                next_poll = time.monotonic() + delay * (1 + min(failures, 5))
                delay = min(delay * 1.5, max(self.poll_every, 5.0))
            self._refresh_log()
            with self._lock:
                if self.outcome is not _UNSET:
                    return
                self._render_elapsed()
                state = self.state
            if state in TERMINAL:
                if poll:
                    self.finish(self._result())
                return
            self._stop.wait(self.tick)

    def _result(self) -> Any:
        try:
            return self.poller.result()
        except Exception as exc:
            return exc

    def _final_state(self, outcome: Any) -> str:
        polled = getattr(self.poller, "state", None) or self.state
        if isinstance(outcome, BaseException) or outcome is None:
            return polled if polled in TERMINAL else "Stopped"
        return "Succeeded"

    # -- logs -------------------------------------------------------------------------------
    def _resolve_log(self) -> None:
        """Find where the log of the operation's resource is (once, when known)."""
        operation = self.operation or {}
        location = operation.get("resourceLocation")
        if not location:
            return  # Azure names the resource only at the end: no log while running
        self._log_resolved = True
        kind = getattr(self.poller, "kind", None)
        resource_id = _resource_id(location)
        try:
            if kind == "image":
                if self.client is not None:
                    image = self.client.get_image(resource_id)
                else:
                    get = getattr(self.poller, "_get_resource", None)
                    image = get(location) if get is not None else None
                uri = (image or {}).get("imageBuildLogUri")
                if uri:
                    self.log_url = redact_text(uri)
                    self._log_fetch = lambda: self._get_text(uri)
            elif kind == "service" and self.client is not None and resource_id:
                client, lines = self.client, self.log_lines
                self.log_url = f"service logs of {resource_id}"
                self._log_fetch = lambda: client.get_service_logs(resource_id, tail=lines)
        except Exception as exc:
            self._log_error = f"log unavailable: {short_error(exc)}"

    def _get_text(self, url: str) -> str:
        if self._http_get is not None:
            response = self._http_get(url, timeout=10)
        else:
            import requests

            response = requests.get(url, timeout=10)
        response.raise_for_status()
        return response.text

    def _refresh_log(self, force: bool = False) -> None:
        """Fetch the log tail (at most every ``log_every`` s) and show it. The request is
        made outside the lock, so a slow log never holds up the poller's callback."""
        now = time.monotonic()
        if not force and now - self._last_log < self.log_every:
            return
        self._last_log = now
        if not self._log_resolved:
            self._resolve_log()
        tail, error = self.log_tail, self._log_error
        if self._log_fetch is not None:
            try:
                text = self._log_fetch() or ""
            except Exception as exc:
                error = f"log unavailable: {short_error(exc)}"
            else:
                error = None
                lines = text.rstrip("\n").splitlines()[-self.log_lines:] if text.strip() else []
                tail = [redact_text(line) for line in lines]
        with self._lock:
            if self.outcome is not _UNSET and not force:
                return  # finished meanwhile: the summary has what it needs
            self.log_tail, self._log_error = tail, error
            self._render_log()

    # -- drawing ----------------------------------------------------------------------------
    def _note(self, text: str | None) -> None:
        value = "" if not text else (
            f"<span class='amlmm-warning' style='color:#b45309'>{html.escape(text)}</span>")
        if self.message.value != value:
            self.message.value = value

    def _render_header(self) -> None:
        poller = self.poller
        op_type = str((self.operation or {}).get("operationType") or str(
            getattr(poller, "kind", "") or "operation").capitalize())
        target = str(getattr(poller, "target_name", None) or "")
        op_id = getattr(poller, "operation_id", "") or ""
        title = ""
        if self.description and self.description not in (op_type, f"{op_type} {target!r}"):
            title = f"<b>{html.escape(self.description)}</b> · "
        self.header.value = (
            f"<div class='amlmm-progress-header'>{title}"
            f"<b class='amlmm-op-type'>{html.escape(op_type)}</b> "
            f"<code class='amlmm-target'>{html.escape(target)}</code> · operation "
            f"<code class='amlmm-op-id'>{html.escape(op_id)}</code></div>")

    def _render_state(self) -> None:
        _colour, style, value = LOOK.get(self.state, LOOK["NotStarted"])
        self.badge.value = _badge(self.state)
        self.bar.bar_style = style
        self.bar.value = value

    def _elapsed_seconds(self) -> float:
        elapsed = getattr(self.poller, "elapsed", None)
        return float(elapsed) if isinstance(elapsed, int | float) else 0.0

    def _render_elapsed(self) -> None:
        text = f"<span class='amlmm-elapsed'>{_fmt_elapsed(self._elapsed_seconds())}</span>"
        if self.elapsed.value != text:
            self.elapsed.value = text

    def _render_log(self) -> None:
        parts = []
        if self._log_error:
            parts.append(f"<div class='amlmm-warning' style='color:#b45309'>"
                         f"{html.escape(self._log_error)}</div>")
        if self.log_tail:
            parts.append("<pre class='amlmm-log' style='max-height:22em;overflow:auto;"
                         "font-size:85%;margin:2px 0'>"
                         + html.escape("\n".join(self.log_tail)) + "</pre>")
        value = "".join(parts)
        if self.log.value != value:
            self.log.value = value

    # -- the summary that replaces the widget -----------------------------------------------
    def summary_lines(self) -> list[str]:
        """The summary as text lines (what a saved notebook shows as text/plain)."""
        outcome, state = self.outcome, self.state
        op_id = getattr(self.poller, "operation_id", "") or ""
        elapsed = _fmt_elapsed(self._elapsed_seconds())
        kind = str(getattr(self.poller, "kind", "") or "resource")
        lines: list[str] = []
        if state == "Succeeded" and isinstance(outcome, dict):
            lines.append(f"{self.description}: Succeeded in {elapsed} (operation {op_id})")
            name = outcome.get("name") or ""
            version = outcome.get("version")
            label = f"{name}:{version}" if version is not None else name
            lines.append(f"{kind}: {label} ({outcome.get('id', '')})")
            for field in ("scoringUri", "imageLocation", "state"):
                if outcome.get(field) and not (field == "state" and kind != "service"):
                    lines.append(f"{field}: {outcome[field]}")
        elif state in ("Failed", "Cancelled"):
            lines.append(f"{self.description}: {state} after {elapsed} (operation {op_id})")
            lines.append(f"error: {self._error_message(outcome)}")
            if self.log_url:
                lines.append(f"log: {self.log_url}")
        else:
            reason = "" if outcome is None else f": {short_error(outcome)}"
            lines.append(f"{self.description}: stopped waiting after {elapsed}{reason}; "
                         f"operation {op_id} goes on")
        return [redact_text(line) for line in lines]

    def _error_message(self, outcome: Any) -> str:
        error = (self.operation or {}).get("error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        if not message and isinstance(outcome, BaseException):
            message = short_error(outcome)
        return redact_text(message or "no reason given")

    def summary_bundle(self) -> dict[str, str]:
        lines = self.summary_lines()
        text = "\n".join(lines)
        tail = self.log_tail if self.state in ("Failed", "Cancelled") else []
        if tail:
            text += "\nlast log lines:\n" + "\n".join(tail)
        colour = LOOK.get(self.state, LOOK["NotStarted"])[0]
        body = "".join(
            f"<div class='amlmm-summary-line'>{html.escape(line)}</div>" for line in lines[1:])
        head = html.escape(lines[0]).replace(html.escape(self.state), _badge(self.state), 1)
        log = ("<pre class='amlmm-log' style='font-size:85%'>"
               + html.escape("\n".join(tail)) + "</pre>") if tail else ""
        markup = (f"<div class='amlmm-summary amlmm-state-{self.state.lower()}' "
                  f"style='border-left:4px solid {colour};padding:2px 8px'>"
                  f"<div class='amlmm-summary-head'>{head}</div>{body}{log}</div>")
        return {"text/plain": text, "text/html": markup}

    # -- display ----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.summary is not None:
            return self.summary
        if self.widget.comm is None:  # closed before it followed anything
            return {"text/plain": repr(self)}
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<ProgressWidget {self.description!r} {self.state}>"


# -- factories the magics call ----------------------------------------------------------------

def widget_progress_factory(client: Any = None, mode: str | None = None
                            ) -> ProgressWidget | None:
    """A progress widget when the front end renders widgets (or ``mode`` says ``widget``),
    else None: the caller then uses text progress."""
    if not frontend.widgets_render(mode):
        return None
    return ProgressWidget(client)


def watch(poller: Any, description: str | None = None, *, client: Any = None,
          mode: str | None = None) -> ProgressWidget | None:
    """``--no-wait``: follow ``poller`` from a daemon thread in a live widget.

    Without widgets nothing is followed (no thread writing into whatever cell runs later):
    one line tells the state, and None is answered.
    """
    chosen = frontend.render_mode(mode)
    if chosen == "widget":
        return ProgressWidget(client).watch(poller, description)
    if chosen == "text":
        kind = str(getattr(poller, "kind", "") or "operation").capitalize()
        name = description or kind
        print(f"{name}: {getattr(poller, 'state', None) or 'NotStarted'} (operation "
              f"{getattr(poller, 'operation_id', '')}); not followed here: wait with "
              f"poller.result()", flush=True)
    return None


def _factory(source: Any, kind: str) -> PagerFactory:
    if hasattr(source, f"list_{kind}s"):
        return pager_factory(source, kind)
    if callable(source):
        return source
    raise TypeError("source must be a ModelManagementClient or a (count, filters) -> "
                    "ItemPager callable")


def make_listing(source: Any, kind: str, *, page_size: int = 10, filter: str = "",
                 mode: str | None = None) -> ListingWidget | TextListing:
    """A listing of ``kind`` (model, manifest, image, service, deployment) over a client or
    a pager factory, first page fetched: a widget, or a :class:`TextListing` without one."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    listing = Listing(_factory(source, kind), kind, page_size=page_size,
                      filters=parse_filter(kind, filter))
    if frontend.widgets_render(mode):
        return ListingWidget(listing, filter_text=filter)
    return TextListing(listing)


def show_listing(source: Any, kind: str, **options: Any) -> ListingWidget | TextListing:
    """:func:`make_listing`, displayed; answers it (don't display the answer again)."""
    from IPython.display import display

    shown = make_listing(source, kind, **options)
    display(shown)
    return shown


def make_panel(client: Any, *, page_size: int = 10, mode: str | None = None) -> Any:
    """The ``%amlmm panel`` dashboard (a widget), or its text form without widgets."""
    from amlmm_magics.notebook.panel import Panel, TextPanel

    if frontend.widgets_render(mode):
        return Panel(client, page_size=page_size)
    return TextPanel(client, page_size=page_size)


def show_panel(client: Any, **options: Any) -> Any:
    """:func:`make_panel`, displayed; answers it (don't display the answer again)."""
    from IPython.display import display

    panel = make_panel(client, **options)
    display(panel)
    return panel
