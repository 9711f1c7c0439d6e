"""The ``humanloop-logging`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to the function that runs it, so adding a command touches nothing else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, Callable, Optional

from ._version import __version__
from .demo import run_demo
from .testing import FakeHumanloop

__all__ = ["main"]

_Command = Callable[[argparse.Namespace], int]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``) and return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    command: _Command = args.func
    return command(args)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanloop-logging",
        description="Tools for humanloop-logging, which turns log calls into Humanloop feedback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_serve(subparsers)
    _add_demo(subparsers)
    return parser


def _add_demo(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="log feedback through faults to the local stand-in and summarise what happened",
        description=(
            "Start the local Humanloop stand-in, run a small app that logs feedback from several "
            "threads through stdlib logging and structlog while the stand-in answers 503s, a 429 "
            "and dropped connections, then print what was sent, retried and rejected. Needs no "
            "API key and no network unless --base-url is given."
        ),
    )
    demo.add_argument(
        "--events", type=int, default=3000, help="feedback events to log (default: %(default)s)"
    )
    demo.add_argument("--threads", type=int, default=4, help="app threads (default: %(default)s)")
    demo.add_argument(
        "--duration",
        type=float,
        default=3.0,
        help="seconds the app spends logging (default: %(default)s)",
    )
    demo.add_argument(
        "--base-url",
        default=None,
        help="send to this server instead of a built-in stand-in (no faults are injected then); "
        "the key comes from --api-key or HUMANLOOP_API_KEY",
    )
    demo.add_argument("--api-key", default=None, help="API key for --base-url")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.events < 1 or args.threads < 1 or args.duration < 0:
        print("humanloop-logging demo: --events and --threads must be >= 1", file=sys.stderr)
        return 2
    api_key = args.api_key or os.environ.get("HUMANLOOP_API_KEY")
    if args.base_url is not None and not api_key:
        print(
            "humanloop-logging demo: --base-url needs --api-key or HUMANLOOP_API_KEY",
            file=sys.stderr,
        )
        return 2
    return run_demo(
        base_url=args.base_url,
        api_key=api_key,
        events=args.events,
        threads=args.threads,
        duration=args.duration,
    )


def _add_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the local Humanloop stand-in in the foreground",
        description=(
            "Serve a local stand-in for the Humanloop feedback API (POST /v4/feedback) until "
            "Ctrl-C or SIGTERM, so an application can be tried without a Humanloop account."
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    serve.add_argument(
        "--api-key",
        default="hl-test-key",
        help="the X-API-KEY value the stand-in accepts (default: %(default)s)",
    )
    serve.set_defaults(func=_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, not {port}")
    return port


def _serve(args: argparse.Namespace) -> int:
    try:
        fake = FakeHumanloop(api_key=args.api_key, host=args.host, port=args.port)
    except ValueError as exc:
        print(f"humanloop-logging serve: {exc}", file=sys.stderr)
        return 2
    previous = _sigterm_as_interrupt()
    try:
        try:
            fake.start()
        except OSError as exc:
            print(
                f"humanloop-logging serve: cannot listen on {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        print(f"Humanloop stand-in listening on {fake.base_url}")
        print(f"API key: {fake.api_key}")
        print("Press Ctrl-C to stop.", flush=True)
        while True:  # the server runs on its own threads; sleep is interruptible everywhere
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C, so a service manager's stop is a clean exit 0.

    Returns the previous handler to restore (None when not on the main thread, where Python does
    not allow installing one).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt
