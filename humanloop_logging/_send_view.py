"""What a person sees of ``humanloop-logging send``: the counts, a progress bar, the summary and
the ``--report`` file.

The bar is tqdm's when the ``cli`` extra is installed, else one line of our own; either only on a
terminal (stderr), and never with ``--quiet``. The library's own warnings are written through the
bar, so they do not tear it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Optional

__all__ = ["Progress", "Report", "Tally"]


@dataclass
class Tally:
    """Every line of every input ends in exactly one of: skipped (not feedback), sent, rejected
    (422, or invalid before sending), undeliverable, in the spool (sent later), or unsettled
    (read, fate unknown at exit)."""

    lines: int = 0
    bytes: int = 0
    feedback: int = 0
    sent: int = 0
    rejected: int = 0
    invalid: int = 0
    undeliverable: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    resumed: int = 0  # lines a checkpoint said were settled before this run
    spooled: int = 0  # left in the spool at exit, for the next process or ``spool drain``
    replayed: int = 0  # taken over from the spool (an earlier process's records)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def summary(tally: Tally, seconds: float, *, dry_run: bool = False) -> list[str]:
    """The closing lines, as a person reads them."""
    rate = tally.lines / seconds if seconds > 0 else 0.0
    rows = [("would send" if dry_run else "sent", tally.sent),
            ("rejected (422)", tally.rejected), ("invalid", tally.invalid)]  # fmt: skip
    if not dry_run:
        rows.append(("undeliverable", tally.undeliverable))
        if tally.spooled:
            rows.append(("in the spool", tally.spooled))
    out = [
        f"{_count(tally.lines, 'line')} read in {seconds:.1f} s ({rate:,.0f} lines/s); "
        f"{_count(tally.feedback, 'feedback record')}",
        *(f"  {label + ':':<16} {number:,}" for label, number in rows),
    ]
    reasons = ", ".join(f"{n:,} {why}" for why, n in sorted(tally.skipped.items()) if n)
    out.append(f"  {'skipped:':<16} {tally.skipped_total:,}" + (f" ({reasons})" if reasons else ""))
    if tally.spooled:
        out.append("  (the spool's records are sent by the next process that opens it, or by "
                   "humanloop-logging spool drain)")  # fmt: skip
    if tally.replayed:
        out.append(f"  taken over from the spool: {tally.replayed:,} (among those sent)")
    if tally.resumed:
        out.append(f"  resumed after line {tally.resumed:,} of a checkpoint")
    return out


class Report:
    """``--report FILE``: one JSON line per line that was not delivered."""

    def __init__(self, path: Optional[str]) -> None:
        self._out: Optional[IO[str]] = None
        if path is not None:
            self._out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")  # noqa: SIM115

    def write(
        self,
        source: str,
        line: Optional[int],
        status: str,
        reason: str,
        *,
        detail: Optional[list[str]] = None,
        data_id: Any = None,
    ) -> None:
        if self._out is None:
            return
        entry: dict[str, Any] = {"input": source, "line": line, "status": status, "reason": reason}
        if data_id is not None:
            entry["data_id"] = data_id if isinstance(data_id, (str, int, float)) else repr(data_id)
        if detail:
            entry["detail"] = detail
        self._out.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._out is not None and self._out is not sys.stdout:
            self._out.close()
        elif self._out is not None:
            self._out.flush()


class Progress:
    """Bytes read of the total, records per second, and the counts; on a terminal only."""

    def __init__(self, total: Optional[int], enabled: bool) -> None:
        self._enabled = enabled
        self._total = total
        self._started = time.monotonic()
        self._shown = 0.0
        self._line = False
        self._bar: Any = None
        if enabled:
            try:  # the optional cli extra; a bar of our own without it
                tqdm: Any = importlib.import_module("tqdm").tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                # A terminal that reports no size (a bare pty) gets 100 columns, not none.
                sized = _columns() > 0
                self._bar = tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                    dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 24,
                    desc="send", leave=True,
                )  # fmt: skip

    def update(self, read: int, done: int, tally: Tally, *, force: bool = False) -> None:
        """``read`` more bytes; ``done`` bytes read in all."""
        if not self._enabled:
            return
        now = time.monotonic()
        fresh = force or now - self._shown >= 0.1
        if self._bar is not None:
            if fresh:
                self._bar.set_postfix_str(self._counts(tally, now), refresh=False)
            self._bar.update(read)
        elif fresh:
            share = f"{done / self._total:4.0%} " if self._total else ""
            bar = ""
            if self._total:
                bar = "[" + "#" * int(min(done / self._total, 1.0) * 24) + " " * 24
                bar = bar[:25] + "] "
            sys.stderr.write(f"\r{bar}{share}{done / 2**20:,.1f} MiB | {self._counts(tally, now)}")
            sys.stderr.flush()
            self._line = True
        if fresh:
            self._shown = now

    def _counts(self, tally: Tally, now: float) -> str:
        seconds = max(now - self._started, 1e-9)
        return (
            f"{tally.feedback / seconds:,.0f} rec/s | sent {tally.sent:,} "
            f"rejected {tally.rejected + tally.invalid:,} skipped {tally.skipped_total:,}"
        )

    def write(self, text: str) -> None:
        """A message on stderr, without tearing the bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
            return
        if self._line:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._line = False


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class ThroughProgress(logging.Handler):
    """The library's warnings during a send, written above the bar."""

    def __init__(self, progress: Progress, level: int) -> None:
        super().__init__(level)
        self._progress = progress
        self.setFormatter(logging.Formatter("humanloop-logging send: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._progress.write(self.format(record))
        except Exception:
            self.handleError(record)
