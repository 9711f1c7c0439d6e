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
refreshes its heartbeat on ``heartbeat()`` and with writes (at most once a second). ``adopt()``
takes the rows of dead owners (``_spool_status.LocalHost.death``), and rows released at a clean
exit, whole owners at once; ``claim()`` returns only this process's rows, in id order. Ids are
global and increase with every insert, so sending one's own rows in id order sends feedback about
a ``data_id`` in call order, and adopted rows (older) go first. A process whose heartbeat lapses
(stopped longer than ``lease``) loses its rows to whoever adopts them: some may then be sent twice,
and the adopter's notice says so. So the lease must be longer than the longest gap between
heartbeats.

**The file** (format, size, faults, a corrupt file moved aside) is ``_spool_file.py``'s; whether an
owner is alive, and ``read_status``, are ``_spool_status.py``'s. Every public method raises only
``SpoolError``, and the spool is usable again once the condition clears.

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
import json
import math
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Sequence
from typing import Callable, Optional, TypeVar

from ._spool_file import (
    BUSY_TIMEOUT,
    ROWS_PER_STATEMENT,
    Corrupt,
    Row,
    delete_rows,
    evict,
    identity,
    is_corrupt,
    move_aside,
    open_file,
    pin,
    reason,
    rollback,
    transaction,
)
from ._spool_status import LocalHost, SpoolStatus, read_status
from .exceptions import SpoolError

__all__ = ["BUSY_TIMEOUT", "Row", "Spool", "SpoolError", "SpoolStatus", "read_status"]

#: Seconds between heartbeats written along with data, and between looks at the file's identity.
_TOUCH_EVERY = 1.0

T = TypeVar("T")


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
        self._local = LocalHost()
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
            with transaction(conn):
                self._touch(conn)
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    chunk = rows[start : start + ROWS_PER_STATEMENT]
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
                with transaction(conn):
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
            with transaction(conn):
                self._touch(conn)
                delete_rows(conn, ids)

        self._run(op)

    def expire(self, max_age: float, keep: Collection[int] = ()) -> list[Row]:
        """Delete and return this process's rows created more than ``max_age`` seconds ago, but
        those in ``keep`` (in flight: their answer settles them)."""
        kept = json.dumps(sorted(keep))

        def op(conn: sqlite3.Connection) -> list[Row]:
            with transaction(conn):
                self._touch(conn)
                rows = [
                    Row(*row)
                    for row in conn.execute(
                        "SELECT id, data_id, body, created FROM records WHERE owner = ? AND "
                        "created < ? AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id",
                        (self._token, self._clock() - max_age, kept),
                    )
                ]
                delete_rows(conn, [row.id for row in rows])
            return rows

        return self._run(op)

    def adopt(self) -> int:
        """Take the rows of dead owners, and rows released at a clean exit; returns how many.

        Whole owners at once, so a data_id's feedback stays in one process, in id order. Rows
        taken from an owner only its lease declared dead come with a notice: if that process was
        merely stopped, what it had in flight may be sent twice.
        """

        def op(conn: sqlite3.Connection) -> int:
            with transaction(conn):
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
            with transaction(conn):
                self._touch(conn)

        self._run(op)

    def release(self) -> int:
        """At a clean exit: hand this process's rows to whoever comes next, unregister; returns
        how many rows stay on disk. Another process may adopt them at once."""

        def op(conn: sqlite3.Connection) -> int:
            with transaction(conn):
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
                        rollback(conn)
                        if attempt == 1 and is_corrupt(error):
                            self._recover(str(error), self._identity)
                            continue
                        raise SpoolError(self.path, reason(error)) from error
                    except BaseException:  # KeyboardInterrupt: leave no transaction open
                        rollback(conn)
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
        if stale and self._identity != identity(self.path):
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
            except Corrupt as error:
                self._recover(str(error), error.identity)
                try:
                    self._conn = self._open()
                except Corrupt as again:
                    raise SpoolError(self.path, f"corrupt even when new: {again}") from again
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn, self._identity = open_file(self.path, self._clock, self._touch)
        return conn

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
        evicted, self.evicted_own_ids = evict(conn, self.max_bytes, self._token)
        return evicted

    def _recover(self, why: str, found: Optional[tuple[int, int]]) -> None:
        """Move the corrupt file ``found`` aside (unless another process already has; then the
        path names another file) and note it."""
        self._close_quietly()
        if identity(self.path) != found:
            return  # another process moved or replaced it already; just open the new one
        target = move_aside(self.path, why)
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
                pin(conn)
                self._broken = (
                    "this process was forked while the spool was in use, so it must not use the "
                    "spool (the parent's connection could not be let go of safely)"
                )
        self._lock = threading.RLock()
        self._holder = 0
        self._fork_safe = False
        self._notices = []
        self._new_owner()


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
