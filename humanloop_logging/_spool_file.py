"""The spool's SQLite file: its format, its faults, and the statements every connection shares.

``Spool`` (``_spool.py``) owns a connection and the rules of ownership; this module knows the file:

**Format.** A file is a feedback spool when its ``PRAGMA application_id`` says so ("HLFS"); a
SQLite database without it is someone else's and is left untouched, as is one written by a newer
schema. It runs in WAL mode, with ``synchronous=NORMAL``: a commit survives a killed process, and
the last commits before a power loss may not.

**Size** is counted in database pages in use, ``(page_count - freelist_count) * page_size``: what
the rows really cost (bodies, keys, b-tree and index overhead), O(1) to read, and the same number
for every process sharing the file, with no running total to keep in step. Past ``max_bytes``, the
oldest rows (of any owner) are deleted in the same transaction as the insert, so the file holds at
most ``max_bytes`` plus one batch (freed pages are reused, never returned to the file system).
The WAL comes on top: up to ``WAL_CHECKPOINT_PAGES`` (40 MiB) between checkpoints, truncated to
``WAL_SIZE_LIMIT`` after.

**Faults** are told apart here: ``reason()`` turns an OS or SQLite error into a short reason for a
``SpoolError`` (read only, disk full, locked longer than ``BUSY_TIMEOUT``), and ``is_corrupt()``
says when the file itself is unusable, so the spool moves it aside (``move_aside``) and starts a
fresh one. Ids keep increasing across such a restart (a fresh file starts its ids from the clock),
so ids claimed from the old file can never name rows of the new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Callable, NamedTuple, Optional

from .exceptions import SpoolError

#: Rows per INSERT or DELETE statement. One statement, not one per row (``executemany``): sqlite3
#: lets go of the GIL at every step, and a thread that must win it back from a busy application
#: thread waits up to the switch interval (5 ms) each time, so per-row steps crawl under load.
#: 4 x 8000 variables stay below SQLite's limit (32766 since 3.32).
ROWS_PER_STATEMENT = 8000

#: Longest a statement waits for another process's write lock: the flush thread must never stall.
BUSY_TIMEOUT = 0.25
#: WAL pages (4 KiB each) before a checkpoint: 40 MiB, more than a burst of 100,000 records.
WAL_CHECKPOINT_PAGES = 10_000
#: The WAL is truncated to this after a checkpoint.
WAL_SIZE_LIMIT = 1 << 20
#: ``PRAGMA application_id``: this file is a feedback spool ("HLFS").
APPLICATION_ID = 0x484C4653
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    data_id TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS records_owner ON records(owner, id);
CREATE TABLE IF NOT EXISTS owners(
    token TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    pidns TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
"""

# SQLite's primary result codes, for errors that carry them (Python 3.11+); older Pythons are
# recognised by SQLite's messages.
_CORRUPT, _CORRUPT_WORDS = (11, 26), ("malformed", "not a database")
_BUSY, _READONLY, _CANTOPEN, _FULL = (5, 6), 8, 14, 13


class Row(NamedTuple):
    """One spooled record. ``body`` is JSON text: as a rule the captured record, a JSON array of
    its fields (data_id, type, value, user, created_at, unset, time of the call), not validated
    yet; for a record with a field that is not plain JSON (a ``datetime``), its request body, a
    JSON object, validated before it was written. ``created`` is the time of the call."""

    id: int
    data_id: str
    body: bytes
    created: float


class Corrupt(Exception):
    """The file is not a usable database: the spool moves it aside and starts a new one.

    ``identity`` is that of the file found corrupt, so the spool moves it only if the path still
    names it (another process may have moved it aside already)."""

    def __init__(self, why: str, identity: Optional[tuple[int, int]] = None) -> None:
        super().__init__(why)
        self.identity = identity


def reason(error: BaseException) -> str:
    """A short, clear reason for an OS or SQLite error."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code == _FULL or "is full" in text:
        return f"the disk is full ({text})"
    if code == _READONLY or "readonly" in text:
        return f"read-only ({text})"
    if code in _BUSY or "locked" in text or "busy" in text:
        return f"locked by another process for more than {BUSY_TIMEOUT} s ({text})"
    if code == _CANTOPEN or "unable to open" in text:
        return f"cannot open the file or create its -wal/-shm beside it ({text})"
    return text


def is_corrupt(error: BaseException) -> bool:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(error)
    return code in _CORRUPT or any(words in text for words in _CORRUPT_WORDS)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a read that later upgrades can fail in WAL mode
    # without waiting (SQLITE_BUSY_SNAPSHOT).
    conn.execute("BEGIN IMMEDIATE")
    yield
    conn.execute("COMMIT")


def open_file(
    path: str,
    clock: Callable[[], float],
    register: Callable[[sqlite3.Connection], None],
) -> tuple[sqlite3.Connection, tuple[int, int]]:
    """Create the directory (0700) and file (0600) if needed and open the spool at ``path``.

    Returns the connection and the file's identity (``st_dev``, ``st_ino``), so the caller can
    tell later whether the path still names this file. ``register`` runs in the transaction that
    creates the schema of a new file, so a process is an owner from its first connection on.
    Raises ``Corrupt`` for an unusable file, SpoolError for anything else.
    """
    try:
        _make_dirs(os.path.dirname(path))
    except OSError as error:
        raise SpoolError(path, f"cannot create its directory: {reason(error)}") from error
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as error:
        raise SpoolError(path, f"cannot open the file: {reason(error)}") from error
    try:
        stat = os.fstat(fd)
    finally:
        os.close(fd)
    found = (stat.st_dev, stat.st_ino)
    conn = None
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        _prepare(conn, path, clock, register)
    except BaseException as error:
        if conn is not None:
            conn.close()
        if isinstance(error, Corrupt):
            error.identity = found
        elif isinstance(error, sqlite3.Error):
            if is_corrupt(error):
                raise Corrupt(str(error), found) from error
            raise SpoolError(path, reason(error)) from error
        raise
    return conn, found


def _prepare(
    conn: sqlite3.Connection,
    path: str,
    clock: Callable[[], float],
    register: Callable[[sqlite3.Connection], None],
) -> None:
    """Refuse someone else's database untouched; then WAL and its settings, an integrity
    check, and the schema of a new file."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id or tables):
        raise SpoolError(path, "is a SQLite database but not a feedback spool; left untouched")
    if version > SCHEMA_VERSION:
        raise SpoolError(path, f"was written by a newer version (schema {version}); left untouched")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise SpoolError(path, f"cannot use write-ahead logging here (got {mode!r})")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    # A checkpoint runs inside the commit that crosses this many pages, and holds the writer
    # up while it copies and syncs: at the default (1,000 pages, 4 MiB) a burst meets several.
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    check = conn.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise Corrupt(check)
    with transaction(conn):
        # Another process may have created the schema since the first look.
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            _create(conn, clock())
        register(conn)


def _create(conn: sqlite3.Connection, now: float) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    # Ids start from the clock, in milliseconds << 20: a fresh file (after a corrupt one was moved
    # aside) never reuses an id that a process still holds from the old one.
    conn.execute(
        "INSERT INTO sqlite_sequence(name, seq) VALUES ('records', ?)", (int(now * 1000) << 20,)
    )
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def evict(conn: sqlite3.Connection, max_bytes: int, token: str) -> tuple[int, list[int]]:
    """Delete the oldest rows while the pages in use exceed ``max_bytes``; returns how many went
    and, of those, the ids of ``token``'s own rows.

    Each step deletes as many rows as the excess would hold at the file's own bytes per row
    (which counts the schema too, so it errs towards too few and takes another step). The
    common case, nothing to evict, costs one statement.
    """
    row_bytes = 0
    evicted = 0
    own: list[int] = []
    while True:
        (used,) = conn.execute(
            "SELECT (page_count - freelist_count) * page_size "
            "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        ).fetchone()
        if used <= max_bytes:
            return evicted, own
        if not row_bytes:
            rows = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            if not rows:
                return evicted, own
            row_bytes = -(-used // rows)
        limit = -(-(used - max_bytes) // row_bytes)
        own += [
            id_
            for (id_,) in conn.execute(
                "SELECT id FROM (SELECT id, owner FROM records ORDER BY id LIMIT ?) "
                "WHERE owner = ?",
                (limit, token),
            )
        ]
        deleted = conn.execute(
            "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id LIMIT ?)",
            (limit,),
        ).rowcount
        if deleted <= 0:
            return evicted, own
        evicted += deleted


def delete_rows(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        chunk = ids[start : start + ROWS_PER_STATEMENT]
        conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.rollback()


def identity(path: str) -> Optional[tuple[int, int]]:
    """``(st_dev, st_ino)`` of the file at ``path``, or None if there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def move_aside(path: str, why: str) -> str:
    """Move a corrupt spool, its -wal and -shm to ``<path>.corrupt-<UTC time>``; returns where."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        # The -wal first: a process opening the path meanwhile must not find the old WAL
        # beside a new, empty file (SQLite would replay it there).
        for suffix in ("-wal", "-shm", ""):
            with contextlib.suppress(FileNotFoundError):
                os.rename(path + suffix, target + suffix)
    except OSError as error:
        raise SpoolError(
            path, f"is corrupt ({why}) and could not be moved aside: {reason(error)}"
        ) from error
    return target


def _make_dirs(directory: str) -> None:
    """Create ``directory`` and any missing parent, each 0700 (private to this user)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)


#: Inherited connections a child must never close: referenced from C, so not even interpreter
#: shutdown frees (and so closes) them.
_pinned: list[sqlite3.Connection] = []


def pin(conn: sqlite3.Connection) -> None:
    """Keep ``conn`` open for the life of the process (a forked child's inherited connection)."""
    _pinned.append(conn)
    with contextlib.suppress(AttributeError):  # CPython only
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
