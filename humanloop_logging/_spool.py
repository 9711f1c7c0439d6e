"""The durable spool: feedback in a SQLite file until the service has answered for it.

One ``Spool`` per shipper and process, used by one thread at a time (the flush thread, or the
main thread at exit, or the CLI), never on a caller's logging path. Several processes may share
one file (gunicorn workers, a new worker beside a dying one, Celery children)::

    records(id, data_id, body, created, owner)   body: the record, as JSON text (see Row)
    owners(token, pid, host, pidns, heartbeat)   one row per live process using the file

A row holds a record as the application's call captured it, not the request body: writing the
captured fields is one ``json`` call for a whole burst, and validation waits until the record is
sent (so a record that is refused is refused then, and reported by the process that sends it).

**Ownership is a lease.** Each process has a random token; the rows it writes are its own, and it
refreshes its heartbeat on ``heartbeat()`` and with writes (at most once a second). An owner is dead when its heartbeat
is older than ``lease`` seconds, or when it ran on this host (same host name and pid namespace)
and its pid is gone. ``adopt()`` takes the rows of dead owners, and rows released at a clean exit,
whole owners at once; ``claim()`` returns only this process's rows, in id order. Ids are global
and increase with every insert, so sending one's own rows in id order sends feedback about a
``data_id`` in call order, and adopted rows (older) go first. A process whose heartbeat lapses
(stopped longer than ``lease``) loses its rows to whoever adopts them: some may then be sent twice,
and the adopter's notice says so. So the lease must be longer than the longest gap between heartbeats.

**Size** is counted in database pages in use, ``(page_count - freelist_count) * page_size``: what
the rows really cost (bodies, keys, b-tree and index overhead), O(1) to read, and the same number
for every process sharing the file, with no running total to keep in step. Past ``max_bytes``, the
oldest rows (of any owner) are deleted in the same transaction as the insert, so the file holds at
most ``max_bytes`` plus one batch (freed pages are reused, never returned to the file system).
The WAL comes on top: up to ``WAL_CHECKPOINT_PAGES`` (40 MiB) between checkpoints, truncated to
``WAL_SIZE_LIMIT`` after.

**Faults never escape as sqlite3 errors**: every public method raises only ``SpoolError`` (read
only, disk full, locked longer than ``BUSY_TIMEOUT``), and the spool is usable again once the
condition clears. A corrupt file is moved aside to ``<path>.corrupt-<UTC time>`` (with its -wal
and -shm) and a fresh spool is started in its place; ``take_notices()`` says so, once. Ids keep
increasing across such a restart (a fresh file starts its ids from the clock), so ids claimed from
the old file can never name rows of the new one.

**Fork.** A connection must not be used across ``fork()``, and the child's own connection must not
share SQLite's per-process lock bookkeeping with an inherited one either: if the inherited
connection is left open, the child's new connection believes it already holds the parent's file
locks and takes none, and when the parent later closes the file as its last user, it deletes the
WAL with the child's commits in it. So a fork waits for a spool transaction in progress to end
(``os.register_at_fork``), and the child closes the inherited connection before anything else
(which SQLite's own fork test shows is safe when no write transaction was open) and opens its own,
under a new token. If a fork could not wait (a fork from inside a spool call, or a fork that skipped
Python's fork hooks), the child keeps the inherited connection open forever, untouched, and the
spool is disabled in that child.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, TypeVar
from urllib.parse import quote

from .exceptions import SpoolError

#: Seconds between heartbeats written along with data, and between looks at the file's identity.
_TOUCH_EVERY = 1.0

#: Rows per INSERT or DELETE statement. One statement, not one per row (``executemany``): sqlite3
#: lets go of the GIL at every step, and a thread that must win it back from a busy application
#: thread waits up to the switch interval (5 ms) each time, so per-row steps crawl under load.
#: 4 x 8000 variables stay below SQLite's limit (32766 since 3.32).
_ROWS_PER_STATEMENT = 8000

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

T = TypeVar("T")


class Row(NamedTuple):
    """One spooled record. ``body`` is JSON text: as a rule the captured record, a JSON array of
    its fields (data_id, type, value, user, created_at, unset, time of the call), not validated
    yet; for a record with a field that is not plain JSON (a ``datetime``), its request body, a
    JSON object, validated before it was written. ``created`` is the time of the call."""

    id: int
    data_id: str
    body: bytes
    created: float


@dataclass(frozen=True)
class OwnerStatus:
    """A process registered in the spool, as ``humanloop-logging spool status`` shows it."""

    token: str
    pid: int
    host: str
    heartbeat_age: float
    alive: bool
    rows: int


@dataclass(frozen=True)
class SpoolStatus:
    """What a spool file holds: ``bytes`` is the file plus its WAL; ``unowned`` rows were released
    by a clean exit and wait for the next process to adopt them."""

    path: str
    rows: int
    unowned: int
    bytes: int
    oldest_age: Optional[float]
    owners: tuple[OwnerStatus, ...]

    @property
    def waiting(self) -> int:
        """Rows no live process holds: released ones, and those of owners that are gone, which
        the next process (or ``spool drain``) takes over."""
        return self.unowned + sum(owner.rows for owner in self.owners if not owner.alive)


class _Corrupt(Exception):
    """Internal: the file is not a usable database."""


class _Local:
    """Who this process is, for telling whether an owner on this host is alive."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        try:
            # Containers sharing a volume may share a host name, never a pid namespace.
            self.pidns = os.readlink("/proc/self/ns/pid")
        except OSError:
            self.pidns = ""

    def death(self, pid: int, host: str, pidns: str, age: float, lease: float) -> Optional[str]:
        """None if the owner is alive; "gone" if its pid is (on this host), "silent" if only its
        lease says so (it may be stopped, or on another host)."""
        if host == self.host and pidns == self.pidns and not _pid_alive(pid):
            return "gone"
        return "silent" if age > lease else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process, alive
        return True
    try:  # a zombie (killed, not yet reaped) holds its pid but is dead
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _reason(error: BaseException) -> str:
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


def _is_corrupt(error: BaseException) -> bool:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(error)
    return code in _CORRUPT or any(words in text for words in _CORRUPT_WORDS)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a read that later upgrades can fail in WAL mode
    # without waiting (SQLITE_BUSY_SNAPSHOT).
    conn.execute("BEGIN IMMEDIATE")
    yield
    conn.execute("COMMIT")


class Spool:
    """A spool file, opened lazily in each process that uses it.

    ``max_bytes`` bounds the pages the rows use (see the module docstring); ``lease`` is how long
    a process may go without a heartbeat before others take its rows; ``clock`` gives the times
    stored and compared (``created`` and heartbeats), injectable for tests.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int,
        lease: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.max_bytes = max_bytes
        self.lease = lease
        self._clock = clock
        self._lock = threading.RLock()
        self._holder = 0  # thread ident inside a call, so a fork from that thread does not wait
        self._notices: list[SpoolError] = []
        #: Of the rows the last ``append`` evicted, the ids of this process's own.
        self.evicted_own_ids: list[int] = []
        self._touched = -math.inf  # when this process's heartbeat was last written
        self._identity_checked = -math.inf  # monotonic
        self._local = _Local()
        self._broken: Optional[str] = None  # set in a child that must not use the spool
        self._fork_safe = False  # set by the before-fork hook when no transaction is open
        self._conn: Optional[sqlite3.Connection] = None
        self._identity: Optional[tuple[int, int]] = None  # (st_dev, st_ino) of the open file
        self._new_owner()
        _live.add(self)

    def _new_owner(self) -> None:
        self._pid = os.getpid()
        self._token = secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"<Spool {self.path} owner={self._token}>"

    # -- the interface ---------------------------------------------------------------------------

    def append(self, rows: Sequence[tuple[str, bytes, float]]) -> int:
        """Store ``(data_id, body, created)`` rows as this process's, in one transaction; then
        evict the oldest rows of any owner while the spool is over ``max_bytes``.

        Returns how many rows were evicted (new ones included, if one batch is over the limit);
        ``evicted_own_ids`` then lists those that were this process's (some may be in flight:
        the engine counts those by their answer, not as lost).
        """
        self.evicted_own_ids = []
        if not rows:
            return 0
        token = self._token

        def op(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                self._touch(conn)
                for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                    chunk = rows[start : start + _ROWS_PER_STATEMENT]
                    conn.execute(
                        "INSERT INTO records(data_id, body, created, owner) VALUES "
                        + ",".join(["(?, ?, ?, ?)"] * len(chunk)),
                        [value for row in chunk for value in (*row, token)],
                    )
                return self._evict(conn)

        return self._run(op)

    def append_packed(self, packed: str) -> int:
        """Like ``append``, for a JSON array of records each written as a JSON array whose first
        item is the data_id and last the time of the call: the whole batch in one statement and
        one parameter, built by one ``json`` call, so the caller spends next to no time per row.

        Each row's body is the record's array as JSON text. Returns rows evicted, as ``append``.
        """
        self.evicted_own_ids = []
        token = self._token

        insert = (
            "INSERT INTO records(data_id, body, created, owner) "
            "SELECT coalesce(json_extract(value, '$[0]'), ''), CAST(value AS BLOB), "
            "json_extract(value, '$[#-1]'), ? FROM json_each(?)"
        )

        def op(conn: sqlite3.Connection) -> int:
            # In a burst, as few statements as can be: each gives the GIL up, and winning it back
            # from a thread that logs flat out can take the whole switch interval. So the
            # heartbeat rides along at most once a second, and the insert commits itself.
            if self._clock() - self._touched >= _TOUCH_EVERY:
                with _transaction(conn):
                    self._touch(conn)
                    conn.execute(insert, (token, packed))
            else:
                conn.execute(insert, (token, packed))
            return self._evict(conn)

        return self._run(op)

    def claim(self, limit: int, exclude: Collection[int] = ()) -> list[Row]:
        """Up to ``limit`` of this process's rows, oldest first, leaving out the ids in
        ``exclude`` (those the engine has in flight). Claiming changes nothing on disk."""

        def op(conn: sqlite3.Connection) -> str:
            # At most len(exclude) of the rows read are left out, so this reads enough. All rows
            # come back in one step, as one JSON array: a step per row would give the GIL up
            # (and wait to win it back) once per row.
            (packed,) = conn.execute(
                "SELECT json_group_array(json_array(id, data_id, CAST(body AS TEXT), created)) "
                "FROM (SELECT id, data_id, body, created FROM records WHERE owner = ? "
                "ORDER BY id LIMIT ?)",
                (self._token, limit + len(exclude)),
            ).fetchone()
            return str(packed)

        rows = [
            Row(id_, data_id, body.encode("utf-8"), created)
            for id_, data_id, body, created in json.loads(self._run(op))
            if id_ not in exclude
        ]
        return rows[:limit]

    def count(self, leave_out: Collection[int] = ()) -> int:
        """How many rows this process owns, but those in ``leave_out`` (in flight): the engine's
        check on its own count, since rows also leave by another process's eviction."""
        left_out = json.dumps(sorted(leave_out))

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM records WHERE owner = ? "
                "AND id NOT IN (SELECT value FROM json_each(?))",
                (self._token, left_out),
            )
            return int(row.fetchone()[0])

        return self._run(op)

    def delete(self, ids: Sequence[int]) -> None:
        """Forget rows the service accepted or rejected for good (whoever owns them now)."""
        if not ids:
            return

        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                self._touch(conn)
                _delete(conn, ids)

        self._run(op)

    def expire(self, max_age: float, keep: Collection[int] = ()) -> list[Row]:
        """Delete and return this process's rows created more than ``max_age`` seconds ago, but
        those in ``keep`` (in flight: their answer settles them)."""
        kept = json.dumps(sorted(keep))

        def op(conn: sqlite3.Connection) -> list[Row]:
            with _transaction(conn):
                self._touch(conn)
                rows = [
                    Row(*row)
                    for row in conn.execute(
                        "SELECT id, data_id, body, created FROM records WHERE owner = ? AND "
                        "created < ? AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id",
                        (self._token, self._clock() - max_age, kept),
                    )
                ]
                _delete(conn, [row.id for row in rows])
            return rows

        return self._run(op)

    def adopt(self) -> int:
        """Take the rows of dead owners, and rows released at a clean exit; returns how many.

        Whole owners at once, so a data_id's feedback stays in one process, in id order. Rows
        taken from an owner only its lease declared dead come with a notice: if that process was
        merely stopped, what it had in flight may be sent twice.
        """

        def op(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                self._touch(conn)
                now = self._clock()
                adopted = conn.execute(
                    "UPDATE records SET owner = ? WHERE owner IS NULL", (self._token,)
                ).rowcount
                for token, pid, host, pidns, heartbeat in conn.execute(
                    "SELECT token, pid, host, pidns, heartbeat FROM owners WHERE token != ?",
                    (self._token,),
                ).fetchall():
                    age = now - heartbeat
                    death = self._local.death(pid, host, pidns, age, self.lease)
                    if death is None:
                        continue
                    taken = conn.execute(
                        "UPDATE records SET owner = ? WHERE owner = ?", (self._token, token)
                    ).rowcount
                    conn.execute("DELETE FROM owners WHERE token = ?", (token,))
                    adopted += taken
                    if taken and death == "silent":
                        self._notices.append(
                            SpoolError(
                                self.path,
                                f"took over {taken} row(s) of process {pid} on {host}, silent "
                                f"for {age:.0f} s (lease {self.lease:g} s); if it still runs, "
                                "feedback it had in flight may be sent twice",
                            )
                        )
            return adopted

        return self._run(op)

    def heartbeat(self) -> None:
        """Tell the other processes this one is alive (the engine calls this every few seconds,
        and during long retries: a lapse longer than ``lease`` hands its rows to others)."""

        def op(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                self._touch(conn)

        self._run(op)

    def release(self) -> int:
        """At a clean exit: hand this process's rows to whoever comes next, unregister; returns
        how many rows stay on disk. Another process may adopt them at once."""

        def op(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                left = conn.execute(
                    "UPDATE records SET owner = NULL WHERE owner = ?", (self._token,)
                ).rowcount
                conn.execute("DELETE FROM owners WHERE token = ?", (self._token,))
            return left

        return self._run(op)

    def status(self) -> SpoolStatus:
        """What the file holds, read on a separate connection (see ``read_status``)."""
        with self._lock:
            if self._pid != os.getpid():
                self._forget_parent()
            if self._broken:
                raise SpoolError(self.path, self._broken)
        return read_status(self.path, lease=self.lease, clock=self._clock)

    def take_notices(self) -> list[SpoolError]:
        """What the spool recovered from since the last call (a corrupt file moved aside, a file
        replaced by another process, rows taken from a process that may still run): each to be
        reported once."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices

    def close(self) -> None:
        """Close this process's connection; the next call opens it again."""
        with self._lock:
            if self._pid != os.getpid():
                self._forget_parent()
            self._close_quietly()

    # -- connection, faults and fork -------------------------------------------------------------

    def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on this process's connection; every failure becomes a SpoolError.

        A corrupt file is moved aside and ``op`` runs again, once, on a fresh one.
        """
        with self._lock:
            self._holder = threading.get_ident()
            try:
                for attempt in (1, 2):
                    conn = self._connection()
                    try:
                        return op(conn)
                    except sqlite3.Error as error:
                        _rollback(conn)
                        if attempt == 1 and _is_corrupt(error):
                            self._recover(str(error))
                            continue
                        raise SpoolError(self.path, _reason(error)) from error
                    except BaseException:  # KeyboardInterrupt: leave no transaction open
                        _rollback(conn)
                        raise
                raise AssertionError("unreachable")
            finally:
                self._holder = 0

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._forget_parent()
        if self._broken:
            raise SpoolError(self.path, self._broken)
        # A stat gives the GIL up too: look at most once a second whether the file was replaced.
        now = self._clock()
        stale = self._conn is not None and now - self._identity_checked >= _TOUCH_EVERY
        if stale:
            self._identity_checked = now
        if stale and self._identity != _identity(self.path):
            self._close_quietly()
            self._notices.append(
                SpoolError(
                    self.path,
                    "the file was moved or removed by another process (a corrupt spool is moved "
                    "aside); started a new one, and rows this process had written stay in the "
                    "old file",
                )
            )
        if self._conn is None:
            self._identity_checked = now
            self._touched = -math.inf  # a new connection registers its owner first
            try:
                self._conn = self._open()
            except _Corrupt as error:
                self._recover(str(error))
                try:
                    self._conn = self._open()
                except _Corrupt as again:
                    raise SpoolError(self.path, f"corrupt even when new: {again}") from again
        return self._conn

    def _open(self) -> sqlite3.Connection:
        """Create the directory (0700) and file (0600) if needed and open the spool."""
        try:
            _make_dirs(os.path.dirname(self.path))
        except OSError as error:
            raise SpoolError(self.path, f"cannot create its directory: {_reason(error)}") from error
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as error:
            raise SpoolError(self.path, f"cannot open the file: {_reason(error)}") from error
        try:
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        self._identity = (stat.st_dev, stat.st_ino)
        conn = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._prepare(conn)
        except BaseException as error:
            if conn is not None:
                conn.close()
            if isinstance(error, sqlite3.Error):
                if _is_corrupt(error):
                    raise _Corrupt(str(error)) from error
                raise SpoolError(self.path, _reason(error)) from error
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Refuse someone else's database untouched; then WAL and its settings, an integrity
        check, and the schema of a new file."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id or tables):
            raise SpoolError(
                self.path, "is a SQLite database but not a feedback spool; left untouched"
            )
        if version > SCHEMA_VERSION:
            raise SpoolError(
                self.path, f"was written by a newer version (schema {version}); left untouched"
            )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise SpoolError(self.path, f"cannot use write-ahead logging here (got {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        # A checkpoint runs inside the commit that crosses this many pages, and holds the writer
        # up while it copies and syncs: at the default (1,000 pages, 4 MiB) a burst meets several.
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Corrupt(check)
        with _transaction(conn):
            # Another process may have created the schema since the first look.
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                _create(conn, self._clock())
            self._touch(conn)

    def _touch(self, conn: sqlite3.Connection) -> None:
        """Refresh this process's heartbeat, registering it if needed (inside a transaction).

        Every write used to do this; ``append_packed`` does it at most once a second (the lease
        is 30 s), and a connection opened afresh does it first.

        A process taken for dead while it was stopped comes back here under the same token;
        its rows went to the adopter, which reported it.
        """
        now = self._clock()
        self._touched = now
        updated = conn.execute(
            "UPDATE owners SET heartbeat = ? WHERE token = ?", (now, self._token)
        ).rowcount
        if not updated:
            conn.execute(
                "INSERT INTO owners(token, pid, host, pidns, heartbeat) VALUES (?, ?, ?, ?, ?)",
                (self._token, os.getpid(), self._local.host, self._local.pidns, now),
            )

    def _evict(self, conn: sqlite3.Connection) -> int:
        """Delete the oldest rows while the pages in use exceed ``max_bytes``.

        Each step deletes as many rows as the excess would hold at the file's own bytes per row
        (which counts the schema too, so it errs towards too few and takes another step). The
        common case, nothing to evict, costs one statement.
        """
        row_bytes = 0
        evicted = 0
        while True:
            (used,) = conn.execute(
                "SELECT (page_count - freelist_count) * page_size "
                "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
            ).fetchone()
            if used <= self.max_bytes:
                return evicted
            if not row_bytes:
                rows = conn.execute("SELECT count(*) FROM records").fetchone()[0]
                if not rows:
                    return evicted
                row_bytes = -(-used // rows)
            limit = -(-(used - self.max_bytes) // row_bytes)
            self.evicted_own_ids += [
                id_
                for (id_,) in conn.execute(
                    "SELECT id FROM (SELECT id, owner FROM records ORDER BY id LIMIT ?) "
                    "WHERE owner = ?",
                    (limit, self._token),
                )
            ]
            deleted = conn.execute(
                "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id LIMIT ?)",
                (limit,),
            ).rowcount
            if deleted <= 0:
                return evicted
            evicted += deleted

    def _recover(self, why: str) -> None:
        """Move a corrupt file aside (unless another process already has) and note it."""
        self._close_quietly()
        if _identity(self.path) != self._identity:
            return  # another process moved or replaced it already; just open the new one
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
        target = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.exists(target):
            n += 1
            target = f"{self.path}.corrupt-{stamp}-{n}"
        try:
            # The -wal first: a process opening the path meanwhile must not find the old WAL
            # beside a new, empty file (SQLite would replay it there).
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.path + suffix, target + suffix)
        except OSError as error:
            raise SpoolError(
                self.path, f"is corrupt ({why}) and could not be moved aside: {_reason(error)}"
            ) from error
        self._notices.append(
            SpoolError(
                self.path,
                f"was corrupt ({why}); moved it to {target} and started a new spool",
                moved_to=target,
            )
        )

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _before_fork(self) -> None:
        # A fork from inside a spool call (a signal handler) cannot wait for the call to end.
        if self._holder == threading.get_ident():
            self._fork_safe = False
        else:
            self._fork_safe = self._lock.acquire(timeout=4 * BUSY_TIMEOUT)

    def _after_fork_in_parent(self) -> None:
        if self._fork_safe:
            self._fork_safe = False
            self._lock.release()

    def _forget_parent(self) -> None:
        """In a forked child: let go of the parent's connection, become a new owner."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._fork_safe:
                # No transaction was open at the fork: closing only lets go of this process's
                # copies; SQLite cannot take the file's locks while the parent holds them, so it
                # neither checkpoints nor deletes anything.
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            else:
                _pin(conn)
                self._broken = (
                    "this process was forked while the spool was in use, so it must not use the "
                    "spool (the parent's connection could not be let go of safely)"
                )
        self._lock = threading.RLock()
        self._holder = 0
        self._fork_safe = False
        self._notices = []
        self._new_owner()


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


def _delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), _ROWS_PER_STATEMENT):
        chunk = ids[start : start + _ROWS_PER_STATEMENT]
        conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.rollback()


def _identity(path: str) -> Optional[tuple[int, int]]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


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


def _pin(conn: sqlite3.Connection) -> None:
    _pinned.append(conn)
    with contextlib.suppress(AttributeError):  # CPython only
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))


def read_status(
    path: str, *, lease: float = 30.0, clock: Callable[[], float] = time.time
) -> SpoolStatus:
    """What the spool at ``path`` holds, read-only: takes no ownership, creates nothing, moves
    nothing aside (for ``humanloop-logging spool status``). Raises only SpoolError."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise SpoolError(path, "no spool here")
    try:
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False
        )
    except sqlite3.Error as error:
        raise SpoolError(path, _reason(error)) from error
    local = _Local()
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise SpoolError(path, "is not a feedback spool")
        now = clock()
        per_owner = dict(
            conn.execute("SELECT owner, count(*) FROM records GROUP BY owner").fetchall()
        )
        oldest = conn.execute("SELECT created FROM records ORDER BY id LIMIT 1").fetchone()
        owners = tuple(
            OwnerStatus(
                token=token,
                pid=pid,
                host=host,
                heartbeat_age=now - heartbeat,
                alive=local.death(pid, host, pidns, now - heartbeat, lease) is None,
                rows=per_owner.get(token, 0),
            )
            for token, pid, host, pidns, heartbeat in conn.execute(
                "SELECT token, pid, host, pidns, heartbeat FROM owners ORDER BY heartbeat"
            )
        )
    except sqlite3.Error as error:
        raise SpoolError(path, _reason(error)) from error
    finally:
        conn.close()
    size = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            size += os.path.getsize(path + suffix)
    return SpoolStatus(
        path=path,
        rows=sum(per_owner.values()),
        unowned=per_owner.get(None, 0),
        bytes=size,
        oldest_age=None if oldest is None else now - oldest[0],
        owners=owners,
    )


_live: weakref.WeakSet[Spool] = weakref.WeakSet()


def _before_fork() -> None:
    for spool in list(_live):
        spool._before_fork()


def _after_fork_in_parent() -> None:
    for spool in list(_live):
        spool._after_fork_in_parent()


def _after_fork_in_child() -> None:
    pid = os.getpid()
    for spool in list(_live):
        if spool._pid != pid:  # a call made by another fork hook may have done it already
            spool._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
