"""``python -m amlmm_magics.local serve|start|stop|status``: the embedded backend's daemon."""

from __future__ import annotations

import argparse
import sys

from amlmm_magics.local import daemon
from amlmm_magics.local.home import Home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amlmm_magics.local",
                                     description="The amlmm embedded Model Management backend.")
    parser.add_argument("command", choices=["serve", "start", "stop", "status"],
                        help="serve: run in the foreground; start/stop/status: the daemon")
    parser.add_argument("--home", help="home folder (default: $AMLMM_HOME or ~/.amlmm)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    args = parser.parse_args(argv)
    home = Home.resolve(args.home)
    try:
        return _run(args, home)
    except daemon.DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, home: Home) -> int:
    if args.command == "serve":
        from amlmm_magics.local.server import serve

        serve(home, args.port)
        return 0
    if args.command == "start":
        info = daemon.start(home, args.port)
        print(f"running: {info.url} (pid {info.pid}, home {info.home})")
        return 0
    if args.command == "stop":
        print("stopped" if daemon.stop(home) else "not running")
        return 0
    info = daemon.status(home)
    print(f"running: {info.url} (pid {info.pid}, home {info.home})" if info else "not running")
    return 0 if info else 3


if __name__ == "__main__":
    sys.exit(main())
