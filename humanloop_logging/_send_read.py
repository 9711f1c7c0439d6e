"""The inputs of ``humanloop-logging send``, read into chunks of at most a batch of feedback.

Lines and bytes are counted in the run's :class:`Tally` as they are read. A chunk's feedback
records, and its lines that name a data_id but are not feedback, are counted (and reported) only
when the delivery loop hands the chunk to the shipper (:func:`hand_over`): a chunk read ahead
while the one before was in flight, and never handed over because the run stopped, is not in the
summary's figures, and a rerun reports its lines once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._formats import Layout
from ._record import Captured
from ._send_view import Progress, Report, Tally
from ._sources import Position, Read, Source

__all__ = ["Chunk", "Reader", "hand_over"]

#: A chunk ends at this many bytes read even without a batch of feedback, so the checkpoint of a
#: file that is mostly other lines moves on too.
CHUNK_BYTES = 16 << 20


@dataclass
class Chunk:
    """Up to a batch of feedback records, where each came from, the chunk's counts, and where each
    input stands after the chunk's last line."""

    items: list[Captured] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)
    ends: dict[str, Position] = field(default_factory=dict)
    size: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: (input, line, reason) of each line that names a data_id but is not feedback.
    refused: list[tuple[str, int, str]] = field(default_factory=list)

    def holds(self) -> bool:
        """Whether handing it over does anything: records, skips to count, or a checkpoint."""
        return bool(self.items or self.ends or self.refused)


def hand_over(chunk: Chunk, tally: Tally, report: Report) -> None:
    """Count ``chunk`` in the run's tally (and report its skipped lines): it is being sent now."""
    tally.feedback += len(chunk.items)
    tally.skipped.update(chunk.skipped)
    for name, number, reason in chunk.refused:
        report.write(name, number, "skipped", reason)


class Reader:
    """The inputs, read into chunks; with ``follow``, forever (until ``stop``)."""

    def __init__(
        self,
        sources: list[Source],
        layout: Layout,
        *,
        batch: int,
        tally: Tally,
        progress: Progress,
    ) -> None:
        self.sources = sources
        self.layout = layout
        self.batch = batch
        self.tally = tally
        self.progress = progress
        self.done_bytes = 0
        #: Every input was read to its end (not only stopped): nothing is left for a rerun.
        self.exhausted = False
        self._chunk = Chunk()

    def chunks(self, follow: bool, poll: float, stop: threading.Event) -> Iterator[Chunk]:
        self._chunk = Chunk()
        waiting = False  # an empty chunk was handed out at the last idle moment
        while not stop.is_set():
            active = [s for s in self.sources if not s.done]
            if not active:
                self.exhausted = True
                break
            moved = False
            for source in active if follow else active[:1]:
                read = source.read(follow)
                self._notes(source)
                if not (read.count or read.lines or read.size):
                    continue
                moved = True
                yield from self._take(source, read)
                if self._chunk.size >= CHUNK_BYTES:
                    yield self._cut()
            if moved:
                waiting = False
            elif self._chunk.holds():
                yield self._cut()
                waiting = False
            elif follow and not waiting:
                waiting = True
                yield Chunk()  # lets the chunk in flight settle and save its checkpoint
            elif follow:
                stop.wait(poll)
        if self._chunk.holds():
            yield self._cut()

    def _cut(self) -> Chunk:
        chunk, self._chunk = self._chunk, Chunk()
        return chunk

    def _notes(self, source: Source) -> None:
        for note in source.notes:
            self.progress.write(f"humanloop-logging send: {note}")
        source.notes.clear()

    def _take(self, source: Source, read: Read) -> Iterator[Chunk]:
        tally = self.tally
        tally.lines += read.count  # read, whatever becomes of them
        tally.bytes += read.size
        tally.skipped["not feedback"] += read.count - len(read.lines)
        self.done_bytes += read.size
        self._chunk.size += read.size
        key = source.key
        recognise = self.layout.recognise
        batch = self.batch
        now = time.time()
        for number, end, text in read.lines:
            got = recognise(text, now)
            chunk = self._chunk
            if isinstance(got, str):
                chunk.skipped[got] += 1
                chunk.refused.append((source.name, number, got))
                continue
            chunk.items.append(got)
            chunk.where.append((source.name, number))
            if len(chunk.items) >= batch:
                if key is not None:
                    chunk.ends[key] = Position(read.end.identity, end, number)
                yield self._cut()
        if key is not None:
            self._chunk.ends[key] = read.end
        self.progress.update(read.size, self.done_bytes, tally)
