"""``python -m amlmm_magics.scoring``: serve one driver program over HTTP with uvicorn.

Either binds ``--host``/``--port`` or accepts on an inherited listening socket (``--fd``),
which is how the local backend runs several replicas of one service on one port and swaps
them during an update. ``--workers N`` runs N processes on one socket (for images).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .app import DEFAULT_MAX_BODY_BYTES, ScoringApp
from .driver import DriverError, load_driver
from .keys import KeyChecker, KeysFileError
from .schema import SchemaError, load_schema

_PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m amlmm_magics.scoring",
        description="Serve a driver program (init()/run(input)) and its models over HTTP.",
    )
    p.add_argument("--app-dir", type=Path, default=Path("."), help="driver, models, files")
    p.add_argument("--driver", default="score.py", help="driver file name in the app dir")
    p.add_argument("--schema", type=Path, help="schema document (decodes input, swagger)")
    p.add_argument("--title", help="service name shown in swagger.json")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--fd", type=int, help="serve on this inherited, listening socket")
    p.add_argument("--workers", type=_positive, default=1, help="processes on one socket")
    p.add_argument("--keys-file", type=Path, help="hashed or plaintext service keys (JSON)")
    p.add_argument("--no-auth", action="store_true", help="serve /score without keys")
    p.add_argument("--max-concurrent", type=_positive, help="503 beyond this many requests")
    p.add_argument("--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--threads", type=_positive,
                   help="size of the run() thread pool (default: --max-concurrent, else 2)")
    p.add_argument("--collect-dir", type=Path, help="append inputs/outputs as JSON lines here")
    p.add_argument("--log-requests", action="store_true", help="one stderr line per request")
    p.add_argument("--ready-file", type=Path, help="written with the pid once serving")
    p.add_argument("--parent-pid", type=int, help="exit when this process dies")
    p.add_argument("--graceful-timeout", type=int, default=5, help="seconds for in-flight work")
    return p


def _die(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


# parent watching --------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """SIGTERM ourselves (a graceful stop) once ``parent_pid`` is gone."""
    direct = os.getppid() == parent_pid

    def parent_gone() -> bool:
        # A dead parent's zombie still answers kill(0): a direct child checks reparenting.
        return os.getppid() != parent_pid if direct else not _process_alive(parent_pid)

    if direct and sys.platform.startswith("linux"):
        # PDEATHSIG fires when the forking *thread* exits, not only the process: use a
        # signal that merely asks "is the parent gone?" instead of SIGTERM itself.
        def on_parent_death(signum: int, frame: Any) -> None:
            if parent_gone():
                signal.raise_signal(signal.SIGTERM)

        signal.signal(signal.SIGUSR1, on_parent_death)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGUSR1), 0, 0, 0)
    if parent_gone():
        _die(f"parent process {parent_pid} is gone", 1)

    def poll() -> None:
        while not parent_gone():
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()


# sockets and workers ----------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        _die(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)


def _inherit(fd: int) -> socket.socket:
    try:
        # socket(fileno=...) detects the family (uvicorn's fd= option assumes AF_UNIX).
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        _die(f"--fd {fd} is not a usable socket: {exc.strerror or exc}", 1)
    os.close(fd)
    return sock


def _child_argv(args: argparse.Namespace, fd: int) -> list[str]:
    argv = [sys.executable, "-m", "amlmm_magics.scoring", "--fd", str(fd)]
    argv += ["--parent-pid", str(os.getpid()), "--app-dir", str(args.app_dir)]
    argv += ["--driver", args.driver, "--max-body-bytes", str(args.max_body_bytes)]
    argv += ["--graceful-timeout", str(args.graceful_timeout)]
    for flag, value in (
        ("--schema", args.schema),
        ("--title", args.title),
        ("--keys-file", args.keys_file),
        ("--max-concurrent", args.max_concurrent),
        ("--threads", args.threads),
        ("--collect-dir", args.collect_dir),
    ):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--no-auth"] * args.no_auth + ["--log-requests"] * args.log_requests
    return argv


class _Workers:
    """The extra worker processes of ``--workers N``, restarted when one dies."""

    def __init__(self, args: argparse.Namespace, sock: socket.socket, count: int) -> None:
        self._argv = _child_argv(args, sock.fileno())
        self._fd = sock.fileno()
        self._env = dict(os.environ)
        # Children must import this very runtime, whatever their working directory.
        self._env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p
        )
        self._stopping = threading.Event()
        self._procs = [self._spawn() for _ in range(count)]
        threading.Thread(target=self._supervise, name="workers", daemon=True).start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._argv, pass_fds=(self._fd,), env=self._env)

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None and not self._stopping.is_set():
                    sys.stderr.write(
                        f"worker {proc.pid} exited with code {proc.returncode}; restarting\n"
                    )
                    self._procs[i] = self._spawn()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# serving ------------------------------------------------------------------------------------


def _write_ready(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, path)


DRAIN_S = 0.5


def _uvicorn_server(
    config: Any, on_started: Callable[[], None], on_stopped: Callable[[], None]
) -> Any:
    """A uvicorn Server that reports when it serves and stops extra workers when it stops."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                on_started()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Stop accepting first, then wait a moment before uvicorn closes idle
            # connections: one accepted just now may not have sent its request yet, and
            # closing it would fail that request during a rolling update. Connections not
            # yet accepted stay queued on the shared socket for the replicas that go on.
            for server in self.servers:
                server.close()
            await asyncio.sleep(DRAIN_S)
            await super().shutdown(sockets=sockets)
            await asyncio.get_running_loop().run_in_executor(None, on_stopped)

    return Server(config)


def _choose(preferred: str, module: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return fallback
    return preferred


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    if args.fd is not None and args.workers > 1:
        _die("--workers cannot be combined with --fd (start one process per fd instead)", 2)
    if args.keys_file is None and not args.no_auth:
        _die("--keys-file is required (or --no-auth to serve without keys)", 2)
    # load_driver changes the working directory: resolve every path first.
    for name in ("app_dir", "schema", "keys_file", "collect_dir", "ready_file"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)

    try:
        keys = None if args.no_auth else KeyChecker.from_file(args.keys_file)
        schema = load_schema(args.schema) if args.schema else None
    except (KeysFileError, SchemaError) as exc:
        _die(str(exc), 1)
    except OSError as exc:
        _die(f"schema {args.schema}: {exc.strerror or exc}", 1)

    sock = _inherit(args.fd) if args.fd is not None else _listen(args.host, args.port)
    workers = _Workers(args, sock, args.workers - 1) if args.workers > 1 else None
    try:
        driver = load_driver(args.app_dir, args.driver)
    except DriverError as exc:
        if workers is not None:
            workers.stop(timeout=2)
        _die(str(exc), 1)

    if args.collect_dir is not None:
        try:
            args.collect_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _die(f"--collect-dir {args.collect_dir}: {exc.strerror or exc}", 1)
    app = ScoringApp(
        driver,
        keys=keys,
        auth_disabled=args.no_auth,
        schema=schema,
        max_body_bytes=args.max_body_bytes,
        max_concurrent=args.max_concurrent,
        threads=args.threads,
        collect_dir=args.collect_dir,
        log_requests=args.log_requests,
        title=args.title,
    )
    config = uvicorn.Config(
        app,
        http=_choose("httptools", "httptools", "h11"),
        loop=_choose("uvloop", "uvloop", "asyncio"),
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # nothing reads the client address: skip the middleware
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    address = sock.getsockname()

    def on_started() -> None:
        where = f"fd {args.fd}" if args.fd is not None else "socket"
        sys.stderr.write(f"serving {driver.path.name} on {where} {address} (pid {os.getpid()})\n")
        if args.ready_file is not None:
            _write_ready(args.ready_file)

    def on_stopped() -> None:
        if workers is not None:
            workers.stop(timeout=args.graceful_timeout + 2)

    _uvicorn_server(config, on_started, on_stopped).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    serve(_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
