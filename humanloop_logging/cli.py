"""The ``humanloop-logging`` command.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``func`` to the function that runs it, so adding a command touches nothing else.

A subcommand imports what it needs when it runs, not when the command line is parsed: ``spool
status`` reads a SQLite file and should not pay for an HTTP server, structlog or requests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from ._check_cli import add_check
from ._rules import is_loopback
from ._send_cli import add_send
from ._spool_cli import add_spool
from ._version import __version__

if TYPE_CHECKING:
    from .testing import RecordedRequest

__all__ = ["main"]

_Command = Callable[[argparse.Namespace], int]

#: ``serve``'s port: not 8000 (uvicorn, Django, gunicorn, MkDocs), 5000 (Flask), 3000, 5173 (Vite),
#: 8080, 8888 (Jupyter), 8501 (Streamlit), 7860 (Gradio), 8765 (websockets' examples) or 8787
#: (wrangler), so the stand-in runs beside the application it serves.
DEFAULT_PORT = 8742


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
    add_spool(subparsers)
    add_check(subparsers)
    add_send(subparsers)
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
    from .demo import run_demo  # noqa: PLC0415 (loads structlog, requests and the stand-in)

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
        default=DEFAULT_PORT,
        help="port to listen on; 0 picks a free one (default: %(default)s, which no common "
        "development server uses, so the stand-in and an app can run side by side)",
    )
    serve.add_argument(
        "--api-key",
        default="hl-test-key",
        help="the X-API-KEY value the stand-in accepts (default: %(default)s)",
    )
    serve.add_argument(
        "--flavour",
        choices=tuple(_FLAVOUR_NAMES),  # the stand-in's FLAVOURS, without importing it
        default="v1",
        help="answer like the service on FastAPI 0.99 + pydantic 1 (v1, the v4 era) or on current "
        "FastAPI + pydantic 2 (v2) (default: %(default)s)",
    )
    serve.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every accepted feedback item to FILE as a JSON line, as it was sent; an "
        "existing FILE is refused unless --append is given",
    )
    serve.add_argument(
        "--append",
        action="store_true",
        help="add to an existing --record FILE instead of refusing it",
    )
    serve.add_argument(
        "--quiet", action="store_true", help="print no line per request, only the summary"
    )
    serve.add_argument(
        "--rate-limit",
        metavar="RPS",
        type=_rate,
        default=None,
        help="answer POSTs beyond RPS requests per second with 429 and a Retry-After, as a token "
        "bucket (default: no limit)",
    )
    serve.add_argument(
        "--burst",
        metavar="N",
        type=_burst,
        default=None,
        help="requests the rate limit lets through at once (default: one second's worth)",
    )
    serve.add_argument(
        "--retry-after",
        choices=_RETRY_AFTER_CHOICES,
        default="integer",
        help="the Retry-After of a rate-limited request: whole seconds rounded up, the exact wait "
        "to the millisecond, or no header (default: %(default)s)",
    )
    serve.add_argument(
        "--no-inspector",
        dest="inspector",
        action="store_false",
        help="do not serve the live inspector page at / (it shows what applications sent, and "
        "switches faults on and off)",
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


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(rate) or rate < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return rate


def _burst(text: str) -> int:
    try:
        burst = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if burst < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {burst}")
    return burst


#: --retry-after's choices, and the set_rate_limit() form each stands for.
_RETRY_AFTER_CHOICES = {"integer": "integer", "fractional": "fractional", "none": None}
_RETRY_AFTER_WORDS = {
    "integer": "a Retry-After in whole seconds",
    "fractional": "a Retry-After to the millisecond",
    "none": "no Retry-After",
}

#: One entry per flavour of the stand-in (``testing.FLAVOURS``); its keys are --flavour's choices.
_FLAVOUR_NAMES = {"v1": "FastAPI 0.99 on pydantic 1", "v2": "current FastAPI on pydantic 2"}


class _RequestLog:
    """Prints one line per request as it is answered, writes accepted items to --record, and
    counts for the summary. Called on the stand-in's connection threads."""

    def __init__(self, out: IO[str], record: Optional[IO[str]], quiet: bool) -> None:
        self._out = out
        self._record = record
        self._quiet = quiet
        self._lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.requests = 0
        self.items_accepted = 0

    def __call__(self, request: RecordedRequest) -> None:
        line = _describe_request(request)
        accepted = _accepted_items(request)
        with self._lock:
            self.requests += 1
            self.statuses[request.status] += 1
            if request.status == 200:
                self.items_accepted += len(accepted)
                if self._record is not None:
                    for item in accepted:
                        self._record.write(json.dumps(item, ensure_ascii=False) + "\n")
                    self._record.flush()
            if not self._quiet:
                print(line, file=self._out, flush=True)

    def summary(self) -> str:
        """``Received 5 requests: 3 answered 200 (12 items accepted), 2 answered 422.``"""
        with self._lock:
            if not self.requests:
                return "Received no requests."
            parts = []
            for status in sorted(self.statuses):
                part = f"{self.statuses[status]} answered {status or 'nothing (dropped)'}"
                if status == 200:
                    part += f" ({_plural(self.items_accepted, 'item')} accepted)"
                parts.append(part)
            return f"Received {_plural(self.requests, 'request')}: {', '.join(parts)}."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _accepted_items(request: RecordedRequest) -> list[Any]:
    if request.status != 200:
        return []
    try:
        body = request.json()
    except ValueError:
        return []
    return body if isinstance(body, list) else [body]


def _describe_request(request: RecordedRequest) -> str:
    """``12:00:01 POST /v4/feedback 422, 5 items: item 1: type; item 4: value, data_id``."""
    from ._details import body_errors, item_errors  # noqa: PLC0415 (only serve needs them)

    stamp = time.strftime("%H:%M:%S", time.localtime(request.time))
    line = f"{stamp} {request.method} {request.path} {request.status or 'dropped'}"
    line += f", {_plural(request.item_count, 'item')}"
    if request.status == 422:
        try:
            detail = json.loads(request.response).get("detail")
        except (ValueError, AttributeError):
            detail = None
        single = not request.batch
        named = item_errors(detail, request.item_count, single=single)
        if named:
            line += ": " + "; ".join(
                f"item {index}: {', '.join(field or '(the item itself)' for field, _ in fields)}"
                for index, fields in named.items()
            )
        else:
            line += ": " + "; ".join(body_errors(detail, request.item_count, single=single))
    elif request.status not in (0, 200) and request.response:
        try:
            reason = json.loads(request.response).get("detail")
        except (ValueError, AttributeError):
            reason = request.response.decode("utf-8", "replace")
        if isinstance(reason, str):
            line += f": {reason}"
    return line


def _serve(args: argparse.Namespace) -> int:
    from .testing import FakeHumanloop  # noqa: PLC0415 (an HTTP server: only serve needs it)

    record: Optional[IO[str]] = None
    if args.append and args.record is None:
        print("humanloop-logging serve: --append needs --record FILE", file=sys.stderr)
        return 2
    if args.record is not None:
        # "x": a record of an earlier run is never lost to a restart; --append adds to it.
        mode = "a" if args.append else "x"
        try:
            record = open(args.record, mode, encoding="utf-8")  # noqa: SIM115 (closed below)
        except FileExistsError:
            print(
                f"humanloop-logging serve: {args.record} exists; give --append to add to it, or "
                "remove it or choose another file",
                file=sys.stderr,
            )
            return 2
        except OSError as exc:
            print(f"humanloop-logging serve: cannot write {args.record}: {exc}", file=sys.stderr)
            return 2
    log = _RequestLog(sys.stdout, record, args.quiet)
    try:
        fake = FakeHumanloop(
            api_key=args.api_key,
            host=args.host,
            port=args.port,
            flavour=args.flavour,
            on_request=log,
            inspector=args.inspector,
        )
        if args.rate_limit or args.burst is not None:
            fake.set_rate_limit(
                args.rate_limit,
                burst=args.burst,
                retry_after=_RETRY_AFTER_CHOICES[args.retry_after],
            )
    except ValueError as exc:
        print(f"humanloop-logging serve: {exc}", file=sys.stderr)
        if record is not None:
            record.close()
        return 2
    previous = _sigterm_as_interrupt()
    started = False
    try:
        try:
            fake.start()
            started = True
        except OSError as exc:
            print(
                f"humanloop-logging serve: cannot listen on {args.host}:{args.port}: {exc}",
                file=sys.stderr,
            )
            return 1
        print(f"Humanloop stand-in listening on {fake.base_url}")
        print(f"API key: {fake.api_key}")
        print(
            f"Answering like {_FLAVOUR_NAMES[fake.flavour]} (--flavour {fake.flavour}), "
            f"bodies checked by {fake.validator}"
        )
        if fake.rate_limit is not None:
            rate, burst = fake.rate_limit
            print(
                f"Rate limit: {rate:g} requests/s, burst {burst}; over it, a 429 "
                f"with {_RETRY_AFTER_WORDS[args.retry_after]}"
            )
        if record is not None:
            how = "Appending accepted items to" if args.append else "Recording accepted items to"
            print(f"{how} {args.record}")
        if fake.inspector_url is not None:
            print(f"Inspector: {fake.inspector_url}")
            if not is_loopback(args.host):
                print(
                    f"humanloop-logging serve: warning: the inspector shows the feedback it "
                    f"receives to anyone who can reach {args.host}:{fake.port}",
                    file=sys.stderr,
                )
        print("Press Ctrl-C to stop.", flush=True)
        while True:  # the server runs on its own threads; sleep is interruptible everywhere
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if started:
            print(log.summary(), flush=True)
        if record is not None:
            record.close()
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
