"""Reading JSON lines for ``humanloop-logging send``: plain files, gzip files, standard input, and
files followed across rotation as ``tail -F`` follows them.

A source hands out :class:`Read`\\ s: the complete lines that contain a needle (the data_id key;
every other line is counted, not looked at: a log is mostly other lines, and ``bytes.find`` skips
them in C), how many lines were read in all, and where the next read starts. A line is complete at
its newline; a partial last line is held until its newline comes, so a line being written is never
read in two halves. (A gzip file or standard input cannot grow: their last line counts at the end.)

A :class:`Position` is what a checkpoint keeps: the file's identity, the byte offset just after the
last line read, and that line's number. The identity (device, inode and a hash of the first bytes)
recognises the file after a restart even when a rotation moved it or a new file took its inode.

Following (:meth:`FileSource.read` with ``follow=True``) handles what log shippers do to a file:
appends; rename rotation (the path now names a new file: the old one is read to its end first);
copytruncate and truncation (the file got shorter than what was read, or its first bytes changed:
it is read again from the start); a path that is missing for a moment between rename and create.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
from dataclasses import dataclass
from typing import IO, Optional, Protocol, cast

__all__ = ["FileSource", "Identity", "Position", "Read", "Source", "StreamSource", "open_source"]

#: How many of a file's first bytes identify it, with its device and inode.
HEAD_BYTES = 256
#: How much one read takes from a file.
BLOCK = 1 << 20

#: (line number, byte offset just after the line, the line without its newline)
Line = tuple[int, int, bytes]


@dataclass(frozen=True)
class Identity:
    """Which file: device, inode, and the hash of its first ``head_len`` bytes."""

    dev: int
    ino: int
    head_len: int
    head: str

    def to_json(self) -> dict[str, object]:
        return {"dev": self.dev, "ino": self.ino, "head_len": self.head_len, "head": self.head}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Identity:
        return cls(int(str(data["dev"])), int(str(data["ino"])), int(str(data["head_len"])),
                   str(data["head"]))  # fmt: skip


@dataclass(frozen=True)
class Position:
    """Where reading stands in one file: just after line ``line``, at byte ``offset``."""

    identity: Optional[Identity]
    offset: int
    line: int


@dataclass
class Read:
    """What one read gave: the lines with the needle, all lines counted, the position after them,
    and the bytes read (for progress)."""

    lines: list[Line]
    count: int
    end: Position
    size: int


def _head(handle: IO[bytes], length: int) -> str:
    handle.seek(0)
    return hashlib.sha256(handle.read(length)).hexdigest()


def identify(handle: IO[bytes], limit: int = HEAD_BYTES) -> Identity:
    """The identity of an open file, from at most ``limit`` first bytes (fewer if it is shorter)."""
    stat = os.fstat(handle.fileno())
    length = min(stat.st_size, limit)
    where = handle.tell()
    try:
        return Identity(stat.st_dev, stat.st_ino, length, _head(handle, length))
    finally:
        handle.seek(where)


def same_file(handle: IO[bytes], identity: Identity) -> bool:
    """Whether ``handle`` is the file ``identity`` names: same inode, same first bytes."""
    stat = os.fstat(handle.fileno())
    if (stat.st_dev, stat.st_ino) != (identity.dev, identity.ino):
        return False
    if stat.st_size < identity.head_len:
        return False
    where = handle.tell()
    try:
        return _head(handle, identity.head_len) == identity.head
    finally:
        handle.seek(where)


def find_moved(path: str, identity: Identity) -> Optional[str]:
    """The file in ``path``'s directory that is ``identity`` (a rotation renamed it), if any."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.inode() != identity.ino or not entry.is_file():
                continue
            with open(entry.path, "rb") as handle:
                if same_file(handle, identity):
                    return entry.path
        except OSError:
            continue
    return None


class _Splitter:
    """Complete lines out of blocks of bytes: the needle's lines picked out, the rest counted."""

    def __init__(self, needle: Optional[bytes], offset: int, line: int) -> None:
        self.needle = needle
        self.offset = offset  # just after the last complete line
        self.line = line
        self.held = b""  # a partial last line, waiting for its newline

    def feed(self, block: bytes, final: bool = False) -> tuple[list[Line], int]:
        data = self.held + block if self.held else block
        last = data.rfind(b"\n")
        if final and data and last != len(data) - 1:
            data += b"\n"  # the stream ended: its unterminated last line is a line
            last = len(data) - 1
        if last < 0:
            self.held = data
            return [], 0
        self.held = data[last + 1 :]
        found: list[Line] = []
        base, number = self.offset, self.line
        needle = self.needle
        if needle is None:
            start = 0
            while start <= last:
                end = data.index(b"\n", start)
                number += 1
                found.append((number, base + end + 1, data[start:end]))
                start = end + 1
        else:
            start = 0
            while True:
                hit = data.find(needle, start, last)
                if hit < 0:
                    break
                begin = data.rfind(b"\n", start, hit) + 1 or start
                end = data.index(b"\n", hit)
                number += data.count(b"\n", start, begin) + 1
                found.append((number, base + end + 1, data[begin:end]))
                start = end + 1
            number += data.count(b"\n", start, last + 1)
        count = number - self.line
        self.offset = base + last + 1
        self.line = number
        return found, count


class StreamSource:
    """A gzip file or standard input: read once, front to back; a gzip file can resume."""

    def __init__(
        self, name: str, needle: Optional[bytes], start: Optional[Position] = None
    ) -> None:
        self.name = name
        self.key: Optional[str] = None if name == "-" else os.path.abspath(name)
        self.total: Optional[int] = None
        self.identity: Optional[Identity] = None
        self.done = False
        self.notes: list[str] = []
        if name == "-":
            self._raw: IO[bytes] = sys.stdin.buffer
            self._stream: IO[bytes] = self._raw
        else:
            self._raw = open(name, "rb")  # noqa: SIM115 (closed in close())
            self.identity = identify(self._raw)
            self.total = os.fstat(self._raw.fileno()).st_size
            self._stream = cast("IO[bytes]", gzip.GzipFile(fileobj=self._raw, mode="rb"))
        skip = 0
        line = 0
        if start is not None and self.identity is not None and start.identity == self.identity:
            skip, line = start.offset, start.line
            while skip - self._stream.tell() > 0:  # decompress up to where the last run stopped
                if not self._stream.read(min(BLOCK, skip - self._stream.tell())):
                    break
        self._splitter = _Splitter(needle, skip, line)

    def tell_read(self) -> int:
        """Bytes of the input read so far (compressed bytes, for a gzip file)."""
        return self._raw.tell() if self._raw is not sys.stdin.buffer else 0

    def read(self, follow: bool = False) -> Read:
        block = self._stream.read1(BLOCK) if hasattr(self._stream, "read1") else b""
        final = not block
        lines, count = self._splitter.feed(block, final=final)
        self.done = final
        end = Position(self.identity, self._splitter.offset, self._splitter.line)
        return Read(lines, count, end, len(block))

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._stream.close()
            self._raw.close()


class FileSource:
    """A plain file, read from a checkpoint on; with ``follow``, followed across rotation."""

    def __init__(
        self, name: str, needle: Optional[bytes], start: Optional[Position] = None
    ) -> None:
        self.name = name
        self.key: Optional[str] = os.path.abspath(name)
        self.done = False
        self.notes: list[str] = []
        self._needle = needle
        self._handle: Optional[IO[bytes]] = None
        self._identity: Optional[Identity] = None
        self._pending_path: Optional[str] = None  # the path, once the rotated file is read out
        offset, line = 0, 0
        opened: Optional[IO[bytes]] = None
        if start is not None and start.identity is not None:
            opened, offset, line = self._resume(start)
        if opened is None:
            try:
                opened = open(name, "rb")  # noqa: SIM115 (closed in close())
            except FileNotFoundError:
                opened = None
        self._adopt(opened, offset, line)
        self.total: Optional[int] = None
        if opened is not None:
            self.total = os.fstat(opened.fileno()).st_size

    def _resume(self, start: Position) -> tuple[Optional[IO[bytes]], int, int]:
        """The file the checkpoint names, where it left off: at the path, or renamed beside it."""
        assert start.identity is not None
        try:
            handle = open(self.name, "rb")  # noqa: SIM115
        except FileNotFoundError:
            handle = None
        if handle is not None and same_file(handle, start.identity):
            if os.fstat(handle.fileno()).st_size >= start.offset:
                return handle, start.offset, start.line
            self.notes.append(f"{self.name} is shorter than the checkpoint: read from the start")
            return handle, 0, 0
        moved = find_moved(self.name, start.identity)
        if moved is not None:
            if handle is not None:
                handle.close()
            self.notes.append(f"{self.name} was rotated to {moved}: its rest is read first")
            self._pending_path = self.name
            return open(moved, "rb"), start.offset, start.line
        if handle is not None:
            self.notes.append(f"{self.name} is not the file of the checkpoint: read from the start")
        return handle, 0, 0

    def _adopt(self, handle: Optional[IO[bytes]], offset: int, line: int) -> None:
        if self._handle is not None and self._handle is not handle:
            self._handle.close()
        self._handle = handle
        self._identity = identify(handle) if handle is not None else None
        if handle is not None:
            handle.seek(offset)
        self._splitter = _Splitter(self._needle, offset, line)

    def tell_read(self) -> int:
        return self._splitter.offset + len(self._splitter.held)

    def _position(self) -> Position:
        return Position(self._identity, self._splitter.offset, self._splitter.line)

    def read(self, follow: bool = False) -> Read:
        """The next lines. Without ``follow``, ``done`` is set at the end of the file; with it, an
        empty read means nothing new, and rotation and truncation are looked for first."""
        handle = self._handle
        if handle is None:
            if follow and self._reopen_path():
                return self.read(follow)
            self.done = not follow
            return Read([], 0, self._position(), 0)
        if follow and self._truncated(handle):
            self.notes.append(f"{self.name} was truncated: read from the start")
            self._adopt(handle, 0, 0)
        block = handle.read(BLOCK)
        if block:
            self._grow_identity(handle)
            lines, count = self._splitter.feed(block)
            return Read(lines, count, self._position(), len(block))
        if not follow:
            self.done = True
            return Read([], 0, self._position(), 0)
        if self._pending_path is not None or self._rotated(handle):
            block = handle.read(BLOCK)  # what the writer added before it let go of the old file
            if block:
                lines, count = self._splitter.feed(block)
                return Read(lines, count, self._position(), len(block))
            # The old file is read to its end; a writer finishes its lines before rotating, so a
            # partial last line left there is a line.
            lines, count = self._splitter.feed(b"", final=True)
            read = Read(lines, count, self._position(), 0)
            if self._reopen_path():
                self.notes.append(f"{self.name} was rotated: following the new file")
                if not read.count:
                    return self.read(follow)  # nothing was left in the old one
            return read
        return Read([], 0, self._position(), 0)

    def _grow_identity(self, handle: IO[bytes]) -> None:
        """A file shorter than HEAD_BYTES was identified by fewer bytes; now it has more."""
        identity = self._identity
        if identity is not None and identity.head_len < HEAD_BYTES:
            self._identity = identify(handle)

    def _truncated(self, handle: IO[bytes]) -> bool:
        identity = self._identity
        size = os.fstat(handle.fileno()).st_size
        if size < self._splitter.offset + len(self._splitter.held):
            return True
        return identity is not None and identity.head_len > 0 and not same_file(handle, identity)

    def _rotated(self, handle: IO[bytes]) -> bool:
        try:
            stat = os.stat(self.name)
        except FileNotFoundError:
            return False  # between rename and create: keep reading the old file
        own = os.fstat(handle.fileno())
        return (stat.st_dev, stat.st_ino) != (own.st_dev, own.st_ino)

    def _reopen_path(self) -> bool:
        try:
            handle = open(self.name, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return False
        self._pending_path = None
        self._adopt(handle, 0, 0)
        return True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Source(Protocol):
    """What the send loop reads from."""

    name: str
    key: Optional[str]  # the checkpoint's key; None: cannot resume (standard input)
    total: Optional[int]  # bytes, when known
    done: bool
    notes: list[str]

    def read(self, follow: bool = False) -> Read: ...

    def tell_read(self) -> int: ...

    def close(self) -> None: ...


def open_source(name: str, needle: Optional[bytes], start: Optional[Position]) -> Source:
    """A source for ``name``: ``-`` is standard input, a gzip file is read through gzip."""
    if name == "-":
        return StreamSource(name, needle)
    with open(name, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return StreamSource(name, needle, start)
    return FileSource(name, needle, start)
