"""Who holds a spool's rows, and whether they are alive: for adoption and for ``spool status``.

An owner is dead when its heartbeat is older than the lease, or when it ran on this host (same
host name and pid namespace) and its pid is gone. ``read_status`` reads a file without taking
part in it, so ``humanloop-logging spool status`` can look at a spool that processes are using.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import quote

from ._spool_file import APPLICATION_ID, BUSY_TIMEOUT, reason
from .exceptions import SpoolError


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


class LocalHost:
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
        raise SpoolError(path, reason(error)) from error
    local = LocalHost()
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
        raise SpoolError(path, reason(error)) from error
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
