"""The progress widget, headless: state transitions from a scripted poller, the summary that
replaces it, log tails, and the threads that must stop."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flows import IRIS_DRIVER, register_iris, register_manifest, unique

from amlmm_magics.api import OperationFailedError, Resource
from amlmm_magics.notebook import frontend, widgets
from amlmm_magics.notebook.progress import ProgressReporter

TERMINAL = {"Succeeded", "Failed", "Cancelled"}
SAS = "http://127.0.0.1:1/logs/b.log?sv=1&sr=b&sp=r&sig=SECRETSIGNATURE"


class ScriptedPoller:
    """What OperationPoller offers, driven by a script of states (one per poll)."""

    def __init__(self, states, *, kind="image", target="img-1", resource=None, error=None,
                 location="/api/subscriptions/s/resourceGroups/r/accounts/a/images/IMG1",
                 hold=None):
        self.script = list(states)
        self.kind, self.target_name = kind, target
        self.operation_id = "op-0123456789"
        self.operation = None
        self.resource = resource or Resource(id="IMG1", name=target, version=1,
                                             imageLocation="amlmm.local/img-1:1@sha256:ab")
        self.error = error
        self.location = location
        self.hold = hold  # an Event: polls after the first wait for it
        self.polls = 0
        self._callbacks = []
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # -- the OperationPoller surface --
    def add_progress_callback(self, cb):
        self._callbacks.append(cb)

    def remove_progress_callback(self, cb):
        if cb in self._callbacks:
            self._callbacks.remove(cb)

    @property
    def state(self):
        return self.operation.get("state") if self.operation else None

    @property
    def elapsed(self):
        return time.monotonic() - self.started

    def poll(self):
        if self.hold is not None and self.polls >= 1:
            self.hold.wait(30)
        with self._lock:
            if self.state not in TERMINAL:
                state = self.script.pop(0) if len(self.script) > 1 else self.script[0]
                self.operation = Resource(id=self.operation_id, operationType="Image",
                                          state=state, resourceLocation=self.location)
                if state == "Failed":
                    self.operation["error"] = {"message": self.error or "it broke"}
            self.polls += 1
            operation = self.operation
        for cb in list(self._callbacks):
            cb(self, operation)
        return operation

    def status(self):
        return self.poll()["state"]

    def done(self):
        return self.status() in TERMINAL

    def wait(self, timeout=None, interval=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status() not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def result(self, timeout=None):
        if not self.wait(timeout):
            raise TimeoutError("still running")
        if self.state != "Succeeded":
            raise OperationFailedError(f"Image operation failed: {self.operation['error']}",
                                       operation=self.operation)
        return self.resource

    def stop_waiting(self):
        pass

    def _get_resource(self, location):
        return Resource(id="IMG1", imageBuildLogUri=SAS)


class RecordingScreen(widgets.Screen):
    def __init__(self):
        self.shown = []
        self.replaced = []

    def show(self, obj):
        self.shown.append(obj)
        return f"display-{len(self.shown)}"

    def replace(self, handle, bundle):
        self.replaced.append((handle, bundle))


class FakeLog:
    """http_get for the build log: a growing text with a SAS signature in one line."""

    def __init__(self):
        self.lines = [f"line {i}" for i in range(30)] + [f"fetching {SAS}"]
        self.calls = 0

    def __call__(self, url, timeout):
        self.calls += 1
        assert "sig=SECRETSIGNATURE" in url  # the real URL is used to fetch...
        text = "\n".join(self.lines) + "\n"
        return type("R", (), {"text": text, "raise_for_status": lambda self: None})()


def progress_threads():
    return [t for t in threading.enumerate() if t.name.startswith("amlmm-progress-")]


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def screen():
    return RecordingScreen()


def make(screen, **kw):
    kw.setdefault("tick", 0.02)
    kw.setdefault("log_every", 0.0)
    kw.setdefault("poll_every", 0.01)
    return widgets.ProgressWidget(screen=screen, **kw)


def test_is_a_progress_reporter():
    for name in ("start", "update", "finish"):
        ours = inspect.signature(getattr(widgets.ProgressWidget, name))
        theirs = inspect.signature(getattr(ProgressReporter, name))
        assert list(ours.parameters) == list(theirs.parameters), name


def test_state_transitions_foreground_then_one_summary(screen):
    poller = ScriptedPoller(["NotStarted", "Running", "Running", "Succeeded"])
    w = make(screen, http_get=FakeLog())
    w.start(poller, "Image 'img-1'")
    assert screen.shown == [w] and w.state == "NotStarted"
    assert "img-1" in w.header.value and "op-0123456789" in w.header.value
    assert "Image" in w.header.value
    seen = []
    poller.add_progress_callback(lambda p, op: seen.append(
        (op["state"], w.state, w.bar.bar_style, w.bar.value, "amlmm-state-" in w.badge.value)))
    poller.poll()
    poller.poll()
    assert seen[-1] == ("Running", "Running", "info", 100, True)
    assert "Running" in w.badge.value
    image = poller.result()
    w.finish(image)
    assert seen[-1][0] == "Succeeded"
    # One display, replaced once by the static summary; the widget is closed.
    assert screen.shown == [w]
    assert len(screen.replaced) == 1
    handle, bundle = screen.replaced[0]
    assert handle == "display-1"
    assert set(bundle) == {"text/plain", "text/html"}
    assert "Succeeded" in bundle["text/plain"] and "amlmm.local/img-1:1" in bundle["text/plain"]
    assert "IMG1" in bundle["text/plain"]
    assert "amlmm-summary" in bundle["text/html"] and "Succeeded" in bundle["text/html"]
    assert w.widget.comm is None and all(c.comm is None for c in w.widget.children)
    w.finish(image)  # a second finish changes nothing
    assert len(screen.replaced) == 1
    assert wait_until(lambda: not progress_threads())


def test_failure_summary_has_error_log_link_and_tail_without_secrets(screen):
    poller = ScriptedPoller(["Running", "Failed"], error="driver init() raised KeyError")
    log = FakeLog()
    w = make(screen, http_get=log, log_lines=5)
    w.start(poller, "Image 'img-1'")
    with pytest.raises(OperationFailedError) as failed:
        poller.result()
    w.finish(failed.value)
    assert w.state == "Failed" and w.bar.bar_style == "danger"
    text = screen.replaced[0][1]["text/plain"]
    markup = screen.replaced[0][1]["text/html"]
    assert "Failed" in text and "driver init() raised KeyError" in text
    assert "log: http://127.0.0.1:1/logs/b.log" in text
    assert "line 29" in text and "line 25" not in text  # the last 5 lines only
    assert "SECRETSIGNATURE" not in text + markup
    assert "sig=***" in text
    assert log.calls >= 1


def test_log_tail_shows_while_running(screen):
    hold = threading.Event()
    poller = ScriptedPoller(["Running", "Succeeded"], hold=hold)
    w = make(screen, http_get=FakeLog(), log_lines=3)
    try:
        w.start(poller, None)
        poller.poll()  # the foreground waiter's first poll
        assert wait_until(lambda: "line 29" in w.log.value)
        assert "SECRETSIGNATURE" not in w.log.value and "line 26" not in w.log.value
        assert w.description == "Image 'img-1'"
        assert wait_until(lambda: w.elapsed.value.endswith("s</span>"))
    finally:
        hold.set()
        w.finish(poller.result())


def test_foreground_thread_stops_at_terminal_state_even_without_finish(screen):
    poller = ScriptedPoller(["Running", "Succeeded"])
    w = make(screen)
    w.start(poller, "x")
    assert w.thread.is_alive()
    poller.wait()
    w.thread.join(10)
    assert not w.thread.is_alive()
    w.finish(poller.result())


def test_interrupted_wait_says_the_operation_goes_on(screen):
    poller = ScriptedPoller(["Running"])
    w = make(screen)
    w.start(poller, "Service 'svc'")
    poller.poll()
    w.finish(None)
    text = screen.replaced[0][1]["text/plain"]
    assert "stopped waiting" in text and "op-0123456789 goes on" in text
    assert w.state == "Stopped"
    assert wait_until(lambda: not w.thread.is_alive())


def test_no_wait_watch_thread_ends_with_the_operation(screen):
    poller = ScriptedPoller(["NotStarted", "Running", "Running", "Succeeded"])
    w = make(screen).watch(poller, "Image 'img-1'")
    w.thread.join(20)
    assert not w.thread.is_alive()
    assert poller.polls >= 4
    assert w.state == "Succeeded" and w.outcome is poller.resource
    assert len(screen.replaced) == 1 and "Succeeded" in screen.replaced[0][1]["text/plain"]
    assert w not in progress_threads()


def test_no_wait_watch_reports_a_failure_itself(screen):
    poller = ScriptedPoller(["Running", "Failed"], error="no space left")
    w = make(screen).watch(poller)
    w.thread.join(20)
    assert isinstance(w.outcome, OperationFailedError)
    assert "no space left" in screen.replaced[0][1]["text/plain"]


def test_no_wait_thread_stops_on_close(screen):
    poller = ScriptedPoller(["Running"])  # never ends
    w = make(screen).watch(poller)
    assert wait_until(lambda: poller.polls >= 2)
    assert w.thread in progress_threads()
    w.close()
    w.thread.join(10)
    assert not w.thread.is_alive()
    polls = poller.polls
    time.sleep(0.2)
    assert poller.polls == polls
    assert "stopped waiting" in screen.replaced[0][1]["text/plain"]


def test_no_wait_thread_stops_when_the_widget_is_closed_from_outside(screen):
    poller = ScriptedPoller(["Running"])
    w = make(screen).watch(poller)
    assert wait_until(lambda: poller.polls >= 1)
    w.widget.close()  # what ipywidgets' own close (or Widget.close_all) does
    w.thread.join(10)
    assert not w.thread.is_alive()


def test_stop_all_ends_every_thread(screen):
    pollers = [ScriptedPoller(["Running"]) for _ in range(3)]
    ws = [make(screen).watch(p) for p in pollers]
    assert wait_until(lambda: all(p.polls >= 1 for p in pollers))
    assert widgets.stop_all(timeout=10) >= 3
    assert all(not w.thread.is_alive() for w in ws)
    for w in ws:
        w.close()


def test_watch_keeps_going_through_poll_errors_then_gives_up(screen, monkeypatch):
    monkeypatch.setattr(widgets, "MAX_POLL_FAILURES", 3)
    poller = ScriptedPoller(["Running"])

    def broken():
        raise ConnectionError("connection refused by 127.0.0.1")

    poller.poll = broken
    w = make(screen, poll_every=0.001).watch(poller)
    w.thread.join(20)
    assert not w.thread.is_alive()
    assert "connection refused" in screen.replaced[0][1]["text/plain"]


def test_a_widget_follows_one_operation_only(screen):
    w = make(screen)
    w.start(ScriptedPoller(["Running"]), "a")
    with pytest.raises(RuntimeError):
        w.start(ScriptedPoller(["Running"]), "b")
    w.close()


def test_threads_stop_at_interpreter_exit(tmp_path):
    """A --no-wait watcher on an operation that never ends does not outlive the process:
    the atexit hook stops it before the interpreter goes down."""
    script = tmp_path / "exit.py"
    script.write_text(f"""
import atexit, sys, threading
sys.path.insert(0, {str(Path(__file__).parent)!r})
def check():  # registered first, so it runs after the widgets' hook
    alive = [t.name for t in threading.enumerate() if t.name.startswith('amlmm-progress-')]
    print('ALIVE', alive, flush=True)
atexit.register(check)
from test_widgets_progress import ScriptedPoller, RecordingScreen
from amlmm_magics.notebook import widgets
w = widgets.ProgressWidget(screen=RecordingScreen(), tick=0.05, poll_every=0.01)
w.watch(ScriptedPoller(['Running']))
print('STARTED', w.thread.is_alive(), flush=True)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert "STARTED True" in done.stdout, done.stdout + done.stderr
    assert "ALIVE []" in done.stdout, done.stdout + done.stderr


def test_factories_follow_the_front_end(monkeypatch, screen, capsys):
    monkeypatch.setenv(frontend.ENV, "text")
    assert widgets.widget_progress_factory() is None
    poller = ScriptedPoller(["Running"])
    assert widgets.watch(poller, "Image 'x'") is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "op-0123456789" in out
    monkeypatch.setenv(frontend.ENV, "none")
    assert widgets.watch(poller) is None and capsys.readouterr().out == ""
    monkeypatch.setenv(frontend.ENV, "widget")
    assert isinstance(widgets.widget_progress_factory(), widgets.ProgressWidget)


# -- a real image build on the embedded backend -------------------------------------------------

def test_real_image_build_log_tail_and_summary(local, tmp_path, screen):
    model, _ = register_iris(local, tmp_path)
    manifest = register_manifest(local, IRIS_DRIVER.format(model=model.name), [model.id])
    name = unique("wimg")
    poller = local.client.begin_create_image(name=name, manifest_id=manifest.id,
                                             compute_resource_id="local")
    w = widgets.ProgressWidget(local.client, screen=screen)
    w.start(poller, f"Image {name!r}")
    try:
        image = poller.result(timeout=180)
    except Exception as exc:
        w.finish(exc)
        raise
    assert wait_until(lambda: any("Building image" in line for line in w.log_tail))
    w.finish(image)
    text = screen.replaced[0][1]["text/plain"]
    assert f"Image {name!r}: Succeeded" in text
    assert image["imageLocation"] in text
    assert "sig=" in w.log_url and "sig=***" in w.log_url
    assert wait_until(lambda: not w.thread.is_alive())


def test_real_failed_build_summary_has_the_log(local, tmp_path, screen):
    broken = "def init():\n    raise RuntimeError('model file is corrupt')\n\ndef run(d):\n" \
             "    return d\n"
    model, _ = register_iris(local, tmp_path)
    manifest = register_manifest(local, broken, [model.id])
    poller = local.client.begin_create_image(name=unique("wbad"), manifest_id=manifest.id,
                                             compute_resource_id="local")
    w = widgets.ProgressWidget(local.client, screen=screen)
    w.start(poller, "Image 'bad'")
    with pytest.raises(OperationFailedError) as failed:
        poller.result(timeout=180)
    w.finish(failed.value)
    bundle = screen.replaced[0][1]
    assert "Failed" in bundle["text/plain"]
    assert "model file is corrupt" in bundle["text/plain"]
    assert "last log lines" in bundle["text/plain"] and "FAILED" in bundle["text/plain"]
    assert "sig=***" in bundle["text/plain"]


def test_real_service_watch_shows_the_service_log(local, tmp_path, screen):
    model, _ = register_iris(local, tmp_path)
    manifest = register_manifest(local, IRIS_DRIVER.format(model=model.name), [model.id])
    image = local.client.begin_create_image(
        name=unique("wsimg"), manifest_id=manifest.id, compute_resource_id="local"
    ).result(timeout=180)
    poller = local.client.begin_create_service(name=unique("wsvc"), image_id=image.id,
                                               compute_resource={"id": "local"})
    w = widgets.ProgressWidget(local.client, screen=screen, tick=0.1).watch(poller)
    try:
        w.thread.join(180)
        assert not w.thread.is_alive()
        assert w.state == "Succeeded", screen.replaced
        service = w.outcome
        text = screen.replaced[0][1]["text/plain"]
        assert f"scoringUri: {service['scoringUri']}" in text
        assert w.log_tail and any("scoring process" in line for line in w.log_tail)
        assert w._repr_mimebundle_() == screen.replaced[0][1]  # shown again: the summary
    finally:
        if isinstance(w.outcome, dict):
            local.client.delete_service(w.outcome["id"])
