"""The durable spool on real files, with real processes: ownership, fork, faults and limits."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from support import ROOT, Clock, child_env, hand_over, tmpfs, wait_until

from humanloop_logging import FeedbackShipper, HumanloopLoggingError
from humanloop_logging._spool import BUSY_TIMEOUT, Row, Spool, read_status
from humanloop_logging.exceptions import SpoolError
from humanloop_logging.testing import FakeHumanloop

pytestmark = pytest.mark.timeout(60)

#: Where the hand-moved clocks of these tests start.
NOW = 1_000_000.0

BODY = b'{"data_id":"data_abc","type":"rating","value":"good","user":"user_42"}'


def rows(
    n: int, prefix: str = "data", start: int = 0, created: float = 1.0
) -> list[tuple[str, bytes, float]]:
    return [
        (f"{prefix}_{i}", b'{"n":%d,"p":"%s"}' % (i, prefix.encode()), created)
        for i in range(start, start + n)
    ]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "spool.db")


@pytest.fixture
def spool(path: str) -> Iterator[Spool]:
    spool = Spool(path, max_bytes=10 << 20)
    yield spool
    spool.close()


class Child:
    """A real Python process running ``code`` with ``PATH`` bound to the spool's path.

    It talks in lines: the test reads what it prints, and it blocks on ``input()`` where it must
    wait for the test (so nothing here sleeps).
    """

    def __init__(self, path: str, code: str) -> None:
        prelude = "import os, sys, json\nfrom humanloop_logging._spool import Spool, SpoolError\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            cwd=ROOT,
            env=child_env(PATH_=path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        assert text, self.finish()
        return text.strip()

    def send(self, text: str = "") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()  # reaped: a zombie still holds its pid

    def finish(self) -> str:
        out, err = self.proc.communicate(timeout=30)
        return out + err


# -- the basics --------------------------------------------------------------------------------


def test_round_trip_in_call_order(spool: Spool) -> None:
    """Rows come back as they were written, oldest first, across batches."""
    spool.append(rows(3))
    spool.append(rows(2, start=3))
    claimed = spool.claim(10)
    assert [row.data_id for row in claimed] == [f"data_{i}" for i in range(5)]
    assert claimed[0] == Row(claimed[0].id, "data_0", b'{"n":0,"p":"data"}', 1.0)
    assert [row.id for row in claimed] == sorted(row.id for row in claimed)


def test_claim_limit_and_exclude(spool: Spool) -> None:
    """claim takes the oldest rows up to limit, skipping the ids in flight, and changes nothing."""
    spool.append(rows(6))
    first = spool.claim(2)
    assert [row.data_id for row in first] == ["data_0", "data_1"]
    after = spool.claim(3, exclude={row.id for row in first})
    assert [row.data_id for row in after] == ["data_2", "data_3", "data_4"]
    assert len(spool.claim(100)) == 6


def test_delete_forgets_rows(spool: Spool) -> None:
    """Deleted rows are gone; deleting unknown ids is harmless."""
    spool.append(rows(4))
    claimed = spool.claim(4)
    spool.delete([claimed[0].id, claimed[2].id, 12345])
    assert [row.data_id for row in spool.claim(10)] == ["data_1", "data_3"]
    spool.delete([])


def test_expire_takes_only_old_rows(path: str) -> None:
    """expire deletes and returns this process's rows older than max_age, nothing else."""
    clock = Clock(NOW)
    spool = Spool(path, max_bytes=10 << 20, clock=clock)
    spool.append(rows(2, created=clock.now - 100))
    spool.append(rows(2, start=2, created=clock.now - 1))
    expired = spool.expire(50)
    assert [row.data_id for row in expired] == ["data_0", "data_1"]
    assert [row.data_id for row in spool.claim(10)] == ["data_2", "data_3"]
    spool.close()


def test_eviction_is_oldest_first_and_counted(path: str) -> None:
    """Past max_bytes the oldest rows go, of any owner, the count is returned, and the pages in
    use stay within the bound."""
    other = Spool(path, max_bytes=10 << 20)
    other.append(rows(100, prefix="other"))
    spool = Spool(path, max_bytes=128 * 1024)
    evicted = 0
    for batch in range(40):
        evicted += spool.append([(f"d{batch}_{i}", BODY * 2, 1.0) for i in range(50)])
    status = spool.status()
    assert status.rows + evicted == 100 + 40 * 50
    assert other.claim(100) == []  # the oldest, someone else's, went first
    kept = spool.claim(10_000)
    assert kept[-1].data_id == "d39_49"
    assert len(kept) > 200  # it evicted what it had to, not everything
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        assert (pages - free) * 4096 <= 128 * 1024
    conn.close()
    spool.close()
    other.close()


def test_one_batch_over_the_limit_evicts_itself(path: str) -> None:
    """A batch bigger than max_bytes leaves an empty spool and counts every row."""
    spool = Spool(path, max_bytes=16 * 1024)
    assert spool.append([(f"d{i}", BODY * 4, 1.0) for i in range(200)]) == 200
    assert spool.claim(10) == []
    spool.close()


def test_status_fields(path: str) -> None:
    """status counts rows, bytes, the oldest age and each owner, on its own connection."""
    clock = Clock(NOW)
    spool = Spool(path, max_bytes=10 << 20, clock=clock)
    spool.append(rows(3, created=clock.now - 7))
    released = Spool(path, max_bytes=10 << 20, clock=clock)
    released.append(rows(2, prefix="gone", created=clock.now - 9))
    assert released.release() == 2
    clock.now += 5
    status = spool.status()
    assert (status.rows, status.unowned) == (5, 2)
    assert status.oldest_age == 7 + 5  # the ids' order, which is the order of writing
    assert status.bytes >= os.path.getsize(path) > 0
    (owner,) = status.owners
    assert (owner.pid, owner.rows, owner.alive, owner.heartbeat_age) == (os.getpid(), 3, True, 5)
    assert owner.host
    assert read_status(path, clock=clock) == status
    spool.close()
    released.close()


def test_status_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    """read_status on a path with no spool says so and creates no file."""
    with pytest.raises(SpoolError, match="no spool here"):
        read_status(str(tmp_path / "none.db"))
    assert list(tmp_path.iterdir()) == []


# -- what is on disk ---------------------------------------------------------------------------


def test_file_and_directories_are_private(tmp_path: Path) -> None:
    """Directories the spool creates are 0700, the file and its -wal/-shm 0600, whatever umask."""
    path = tmp_path / "a" / "b" / "spool.db"
    old = os.umask(0)
    try:
        spool = Spool(str(path), max_bytes=1 << 20)
        spool.append(rows(1))
        mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        assert mode == {"spool.db": 0o600, "spool.db-wal": 0o600, "spool.db-shm": 0o600}
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        spool.close()
    finally:
        os.umask(old)


def test_only_bodies_are_stored(spool: Spool, path: str) -> None:
    """The spool cannot be given a key or headers, and stores only data_id, body, time, owner."""
    assert set(inspect.signature(Spool).parameters) == {"path", "max_bytes", "lease", "clock"}
    spool.append([("data_abc", BODY, 1.0)])
    conn = sqlite3.connect(path)
    columns = {
        table: [column[1] for column in conn.execute(f"PRAGMA table_info({table})")]
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert columns == {
        "records": ["id", "data_id", "body", "created", "owner"],
        "sqlite_sequence": ["name", "seq"],
        "owners": ["token", "pid", "host", "pidns", "heartbeat"],
    }
    assert conn.execute("SELECT data_id, body FROM records").fetchall() == [("data_abc", BODY)]
    conn.close()


# -- processes ---------------------------------------------------------------------------------


def test_two_processes_claim_only_their_own_rows(spool: Spool, path: str) -> None:
    """Two live processes on one file each see only the rows they wrote."""
    child = Child(
        path,
        """
        spool = Spool(os.environ["PATH_"], max_bytes=10 << 20)
        spool.append([("child_%d" % i, b"{}", 1.0) for i in range(3)])
        print("written", flush=True)
        input()
        print(json.dumps([row.data_id for row in spool.claim(100)]), flush=True)
        """,
    )
    spool.append(rows(2, prefix="parent"))
    assert child.line() == "written"
    assert spool.adopt() == 0  # the child is alive: nothing to take
    assert [row.data_id for row in spool.claim(100)] == ["parent_0", "parent_1"]
    owners = {(owner.pid, owner.rows, owner.alive) for owner in read_status(path).owners}
    assert owners == {(os.getpid(), 2, True), (child.proc.pid, 3, True)}
    child.send()
    assert child.line() == '["child_0", "child_1", "child_2"]'
    child.finish()


def test_rows_of_a_killed_process_are_adopted_first(spool: Spool, path: str) -> None:
    """After kill -9, a live process on this host adopts the dead one's rows at once (its pid is
    gone), and sends them before its own newer rows."""
    child = Child(
        path,
        """
        spool = Spool(os.environ["PATH_"], max_bytes=10 << 20)
        spool.append([("dead_%d" % i, b"{}", 1.0) for i in range(3)])
        print("written", flush=True)
        input()
        """,
    )
    assert child.line() == "written"
    spool.append(rows(2, prefix="live"))
    child.kill()
    assert spool.adopt() == 3
    assert spool.take_notices() == []  # its pid is gone: certainly dead, nothing to warn about
    order = [row.data_id for row in spool.claim(100)]
    assert order == ["dead_0", "dead_1", "dead_2", "live_0", "live_1"]
    assert [owner.pid for owner in spool.status().owners] == [os.getpid()]


def test_lease_expiry_adopts_when_the_pid_check_cannot_tell(path: str) -> None:
    """A process whose heartbeat is older than the lease loses its rows even if its pid lives
    (a stopped process, or one on another host); a fresh heartbeat keeps them."""
    child = Child(
        path,
        """
        spool = Spool(os.environ["PATH_"], max_bytes=10 << 20)
        spool.append([("stale_%d" % i, b"{}", 1.0) for i in range(2)])
        print("written", flush=True)
        input()
        """,
    )
    assert child.line() == "written"
    clock = Clock(time.time())
    spool = Spool(path, max_bytes=10 << 20, lease=30.0, clock=clock)
    assert spool.adopt() == 0
    clock.now += 31
    assert spool.adopt() == 2
    assert [row.data_id for row in spool.claim(10)] == ["stale_0", "stale_1"]
    child.send()
    child.finish()
    spool.close()


def test_pid_check_applies_only_on_this_host(path: str) -> None:
    """An owner registered from another host is judged by its lease alone."""
    clock = Clock(NOW)
    spool = Spool(path, max_bytes=10 << 20, clock=clock)
    spool.append(rows(1, prefix="mine"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO owners VALUES ('elsewhere', 999999999, 'other-host', '', ?)", (clock.now,)
    )
    conn.execute(
        "INSERT INTO records(data_id, body, created, owner) VALUES ('far', x'7b7d', 1, 'elsewhere')"
    )
    conn.close()
    assert spool.adopt() == 0
    clock.now += 31
    assert spool.adopt() == 1
    spool.close()


def test_release_makes_rows_adoptable_at_once(spool: Spool, path: str) -> None:
    """A clean release hands a live process's rows to the next adopter without waiting."""
    child = Child(
        path,
        """
        spool = Spool(os.environ["PATH_"], max_bytes=10 << 20)
        spool.append([("left_%d" % i, b"{}", 1.0) for i in range(4)])
        print(spool.release(), flush=True)
        input()
        """,
    )
    assert child.line() == "4"
    assert spool.adopt() == 4
    assert len(spool.claim(10)) == 4
    child.send()
    child.finish()


def test_taking_rows_by_lease_alone_is_noticed(path: str) -> None:
    """Rows taken from an owner only its lease declared dead come with a notice (it may just be
    stopped); that owner, back, keeps working under its own token without them."""
    slow_clock, clock = Clock(NOW), Clock(NOW)
    slow = Spool(path, max_bytes=10 << 20, lease=30.0, clock=slow_clock)
    slow.append(rows(2, prefix="slow"))
    other = Spool(path, max_bytes=10 << 20, lease=30.0, clock=clock)
    clock.now += 31
    assert other.adopt() == 2
    (notice,) = other.take_notices()
    assert f"took over 2 row(s) of process {os.getpid()}" in notice.reason
    assert "sent twice" in notice.reason
    assert path in str(notice)
    slow_clock.now = clock.now
    slow.append(rows(1, prefix="back"))
    assert [row.data_id for row in slow.claim(10)] == ["back_0"]
    assert slow.take_notices() == []
    assert other.adopt() == 0
    assert other.take_notices() == []
    slow.close()
    other.close()


FORK_SCRIPT = """
import sqlite3, time
path = os.environ["PATH_"]
spool = Spool(path, max_bytes=10 << 20)
spool.append([("parent_0", b"{}", 1.0)])
to_child_r, to_child_w = os.pipe()
to_parent_r, to_parent_w = os.pipe()
pid = os.fork()
if pid == 0:
    spool.append([("child_0", b"{}", 1.0)])
    mine = [row.data_id for row in spool.claim(10)]
    os.write(to_parent_w, b"x")
    os.read(to_child_r, 1)  # the parent has closed its connection
    spool.append([("child_1", b"{}", 1.0)])
    spool.close()
    os._exit(0 if mine == ["child_0"] else 3)
os.read(to_parent_r, 1)
parent_rows = [row.data_id for row in spool.claim(10)]
spool.append([("parent_1", b"{}", 1.0)])
spool.close()  # the parent lets go first: the child must still hold real locks
os.write(to_child_w, b"x")
_, status = os.waitpid(pid, 0)
conn = sqlite3.connect(path)
print(json.dumps({
    "child_exit": os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status,
    "parent_rows": parent_rows,
    "on_disk": sorted(r[0] for r in conn.execute("SELECT data_id FROM records")),
}), flush=True)
"""


def test_fork_child_uses_its_own_connection(path: str) -> None:
    """A forked child writes and claims through a connection of its own under a new owner, the
    parent keeps working, and the child's commits survive the parent closing the file first."""
    child = Child(path, FORK_SCRIPT)
    result = child.line()
    child.finish()
    assert result == (
        '{"child_exit": 0, "parent_rows": ["parent_0"], '
        '"on_disk": ["child_0", "child_1", "parent_0", "parent_1"]}'
    )


def test_fork_from_inside_a_spool_call_disables_the_child(path: str) -> None:
    """A fork that could not wait for a spool transaction leaves the child without the spool,
    saying why, and the parent unharmed."""
    child = Child(
        path,
        """
        spool = Spool(os.environ["PATH_"], max_bytes=10 << 20)
        spool.append([("parent_0", b"{}", 1.0)])
        pid = spool._run(lambda conn: os.fork())
        if pid == 0:
            try:
                spool.append([("child_0", b"{}", 1.0)])
            except SpoolError as error:
                os._exit(0 if "forked while the spool was in use" in error.reason else 4)
            os._exit(5)
        _, status = os.waitpid(pid, 0)
        spool.append([("parent_1", b"{}", 1.0)])
        print(status >> 8, [row.data_id for row in spool.claim(10)], flush=True)
        """,
    )
    assert child.line() == "0 ['parent_0', 'parent_1']"
    child.finish()


# -- faults ------------------------------------------------------------------------------------


def test_an_interrupt_inside_a_transaction_leaves_no_transaction_open(path: str) -> None:
    """KeyboardInterrupt in the middle of a write rolls it back; the next write works."""
    interrupt = False

    def clock() -> float:
        if interrupt:
            raise KeyboardInterrupt
        return 1.0

    spool = Spool(path, max_bytes=10 << 20, clock=clock)
    spool.heartbeat()
    interrupt = True  # the next call of the clock is inside append's transaction
    with pytest.raises(KeyboardInterrupt):
        spool.append(rows(1))
    interrupt = False
    spool.append(rows(1, prefix="next"))
    assert [row.data_id for row in spool.claim(10)] == ["next_0"]
    spool.close()


def test_garbage_file_is_moved_aside(path: str) -> None:
    """A file that is not a database is moved aside, a fresh spool takes its place, and a notice
    names both paths."""
    Path(path).write_bytes(b"\x00garbage, not sqlite\xff" * 300)
    spool = Spool(path, max_bytes=10 << 20)
    assert spool.append(rows(2)) == 0
    (notice,) = spool.take_notices()
    assert notice.moved_to is not None
    assert notice.moved_to.startswith(path + ".corrupt-")
    assert notice.moved_to in str(notice)
    assert path in str(notice)
    assert Path(notice.moved_to).read_bytes().startswith(b"\x00garbage")
    assert len(spool.claim(10)) == 2
    assert spool.take_notices() == []
    spool.close()


def test_damaged_pages_are_found_at_open(path: str) -> None:
    """A spool whose pages were damaged fails its integrity check at open and is moved aside."""
    spool = Spool(path, max_bytes=10 << 20)
    spool.append([(f"d{i}", BODY, 1.0) for i in range(500)])
    spool.close()
    with open(path, "r+b") as file:
        file.seek(3 * 4096)
        file.write(b"\xff" * 8192)
    spool = Spool(path, max_bytes=10 << 20)
    assert spool.claim(10) == []
    (notice,) = spool.take_notices()
    assert notice.moved_to is not None
    assert os.path.exists(notice.moved_to)
    spool.append(rows(1))
    assert len(spool.claim(10)) == 1
    spool.close()


def test_a_database_that_is_not_a_spool_is_left_alone(path: str) -> None:
    """A SQLite file of someone else's is refused, untouched, with a SpoolError."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users(name TEXT)")
    conn.commit()
    conn.close()
    before = Path(path).read_bytes()
    spool = Spool(path, max_bytes=10 << 20)
    with pytest.raises(SpoolError, match="not a feedback spool"):
        spool.append(rows(1))
    assert Path(path).read_bytes() == before
    assert spool.take_notices() == []


def test_a_file_replaced_by_another_process_is_followed(path: str) -> None:
    """When another process moves the file aside, this one notices, starts on the new file, and
    its ids never collide with those it holds from the old one (it looks once a second)."""
    now = [time.time()]
    spool = Spool(path, max_bytes=10 << 20, clock=lambda: now[0])
    spool.append(rows(2))
    old_ids = {row.id for row in spool.claim(10)}
    for suffix in ("-wal", "-shm", ""):  # as another process's _recover does
        os.rename(path + suffix, path + ".aside" + suffix)
    now[0] += 1.5
    spool.append(rows(1, prefix="new"))
    (notice,) = spool.take_notices()
    assert "moved or removed by another process" in notice.reason
    new = spool.claim(10, exclude=old_ids)
    assert [row.data_id for row in new] == ["new_0"]
    assert new[0].id not in old_ids
    spool.delete(sorted(old_ids))  # in-flight ids from the old file delete nothing here
    assert len(spool.claim(10)) == 1
    spool.close()


def test_locked_spool_raises_after_its_busy_timeout_and_recovers(spool: Spool, path: str) -> None:
    """Another process holding the write lock makes a write fail after BUSY_TIMEOUT, as a
    SpoolError, while the lock is still held; once the lock is gone the spool works."""
    spool.append(rows(1))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(SpoolError, match="locked") as raised:
        spool.append(rows(1, start=1))
    # The lock is held throughout: the write gave up on its own, after BUSY_TIMEOUT. The bound
    # is only against waiting for the lock without end: 20 times BUSY_TIMEOUT, no speed claim.
    assert time.monotonic() - started < 5.0
    assert f"for more than {BUSY_TIMEOUT} s" in str(raised.value)
    assert path in str(raised.value)
    assert not isinstance(raised.value, sqlite3.Error)
    holder.execute("ROLLBACK")
    holder.close()
    spool.append(rows(1, start=2))
    assert [row.data_id for row in spool.claim(10)] == ["data_0", "data_2"]


def remount(directory: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(directory)], check=True)


def test_full_disk_raises_and_recovers(tmp_path: Path) -> None:
    """On a full file system (a 512 KiB tmpfs) appending raises SpoolError, not a sqlite3 error,
    the rows already spooled stay, and appending works again once space is freed."""
    with tmpfs(tmp_path / "small", "size=512k", "mode=0700") as directory:
        path = str(directory / "spool.db")
        spool = Spool(path, max_bytes=10 << 20)
        spool.append(rows(10))
        filler = directory / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        failure = None
        for start in range(10, 10_000, 500):
            try:
                spool.append([(f"d{i}", BODY * 4, 1.0) for i in range(start, start + 500)])
            except SpoolError as error:
                failure = error
                break
        assert failure is not None
        assert str(failure).startswith(f"feedback spool {path}: the disk is full")
        filler.unlink()
        spool.append(rows(1, prefix="after"))
        claimed = [row.data_id for row in spool.claim(10_000)]
        assert claimed[:10] == [f"data_{i}" for i in range(10)]
        assert claimed[-1] == "after_0"
        spool.close()


def test_read_only_file_system_raises_and_recovers(tmp_path: Path) -> None:
    """On a read-only mount the spool raises SpoolError naming the path, and works once the
    file system is writable again."""
    with tmpfs(tmp_path / "ro", "size=1m", "ro") as directory:
        path = str(directory / "sub" / "spool.db")
        spool = Spool(path, max_bytes=1 << 20)
        with pytest.raises(SpoolError, match="Read-only file system") as raised:
            spool.append(rows(1))
        assert path in str(raised.value)
        remount(directory, "rw")
        spool.append(rows(1))
        assert len(spool.claim(10)) == 1
        spool.close()


UNPRIVILEGED = """
import sys
from humanloop_logging._spool import Spool, SpoolError
for path in sys.argv[1:]:
    try:
        Spool(path, max_bytes=1 << 20).append([("d", b"{}", 1.0)])
        print("written", path)
    except SpoolError as error:
        print("SpoolError", error)
"""


def test_read_only_directory_and_file_for_an_unprivileged_user() -> None:
    """As a user who may not write (a root-owned 0755 directory, a 0644 file, its own file in that
    directory), opening fails with a SpoolError naming the path (root ignores permissions, so
    this runs as nobody)."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as an unprivileged user")
    probe = subprocess.run([*nobody, "-c", "pass"], capture_output=True, text=True, check=False)
    if probe.returncode:
        pytest.skip(f"this interpreter cannot run as nobody: {probe.stderr.strip()}")
    base = tempfile.mkdtemp(prefix="spool-ro-")
    try:
        os.chmod(base, 0o755)
        existing, writable = os.path.join(base, "existing.db"), os.path.join(base, "mine.db")
        for path in (existing, writable):
            first = Spool(path, max_bytes=1 << 20)
            first.append(rows(1))
            first.close()  # the last connection: SQLite removes the -wal and -shm
        os.chmod(existing, 0o644)
        os.chown(writable, 65534, 65534)  # nobody's own file, in a directory it cannot write
        targets = [os.path.join(base, "new.db"), os.path.join(base, "sub", "new.db")]
        targets += [existing, writable]
        # The package as nobody can read it: the checkout may sit in a 0700 directory (mktemp).
        library = os.path.join(base, "lib")
        shutil.copytree(ROOT / "humanloop_logging", os.path.join(library, "humanloop_logging"))
        for directory, _, files in os.walk(library):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        done = subprocess.run(
            [*nobody, "-c", UNPRIVILEGED, *targets],
            capture_output=True,
            text=True,
            check=False,
            cwd=base,
            env={**os.environ, "PYTHONPATH": library},
            timeout=30,
        )
        lines = done.stdout.splitlines()
        assert len(lines) == 4, done.stdout + done.stderr
        assert (
            lines[0]
            == f"SpoolError feedback spool {targets[0]}: cannot open the file: Permission denied"
        )
        assert (
            lines[1]
            == f"SpoolError feedback spool {targets[1]}: cannot create its directory: Permission denied"
        )
        assert lines[2].startswith(f"SpoolError feedback spool {existing}: cannot open the file")
        assert lines[3].startswith(f"SpoolError feedback spool {writable}: read-only")
    finally:
        shutil.rmtree(base)


def test_rows_evicted_while_in_flight_are_counted_once_by_their_answer(
    fake_humanloop: FakeHumanloop, path: str
) -> None:
    """A burst into a small spool evicts the oldest rows, and the oldest are the ones in flight:
    those are settled by their answer (sent), not also counted as dropped. The counters balance,
    and none goes negative."""
    burst_over = threading.Event()

    def on_error(error: HumanloopLoggingError) -> None:
        if isinstance(error, SpoolError) and "oldest" in error.reason:
            burst_over.set()

    fake_humanloop.hang_next(1)
    shipper = FeedbackShipper(
        fake_humanloop.api_key,
        fake_humanloop.base_url,
        spool_path=path,
        max_spool_bytes=64 * 1024,
        batch_size=100,
        max_queue_size=10_000,
        on_error=on_error,
    )
    try:
        hand_over(shipper, "first")
        assert fake_humanloop.wait_for_arrivals(1, timeout=20)  # its row is in flight, held
        for n in range(3000):
            hand_over(shipper, f"burst-{n}")
        assert burst_over.wait(30), "the burst never evicted"
        fake_humanloop.clear()  # the held request's connection drops: it is sent again
        assert shipper.flush(30)
    finally:
        shipper.close()
    stats = shipper.stats()
    received = {item["data_id"] for item in fake_humanloop.received}
    assert "first" in received
    assert (stats.pending, stats.spooled) == (0, 0), stats
    assert stats.sent == len(received)
    assert stats.enqueued == stats.sent + stats.dropped + stats.failed + stats.rejected


def _waiting_for_the_sender() -> bool:
    """Whether the spool's writer thread is in its close, waiting for the sender to finish."""
    writers = {t.ident for t in threading.enumerate() if t.name == "humanloop-feedback-flush"}
    for ident, frame in sys._current_frames().items():
        if ident not in writers:
            continue
        names = set()
        current: Any = frame
        while current is not None:
            names.add(current.f_code.co_name)
            current = current.f_back
        if {"join", "_write_round"} <= names:
            return True
    return False


def test_records_logged_while_a_close_waits_for_the_sender_are_delivered(
    fake_humanloop: FakeHumanloop, path: str
) -> None:
    """With a spool, a close moves the queue to disk and waits for the sender. Records logged in
    that wait were stranded: neither on disk nor sent, and lost at exit without a word."""
    fake_humanloop.hang_next(1)  # the sender's first request is held: the close waits for it
    shipper = FeedbackShipper(
        fake_humanloop.api_key, fake_humanloop.base_url, spool_path=path, batch_size=100
    )
    closer: Optional[threading.Thread] = None
    try:
        for n in range(5):
            hand_over(shipper, f"before-{n}")
        assert fake_humanloop.wait_for_arrivals(1, timeout=20)
        closer = threading.Thread(target=shipper.close, args=(20,))
        closer.start()
        waiting = wait_until(lambda: _waiting_for_the_sender() or not closer.is_alive(), 20)
        assert waiting, "the close never waited for the sender"
        assert closer.is_alive(), "the close ended without waiting for the sender"
        for n in range(5):
            hand_over(shipper, f"during-{n}")
        fake_humanloop.clear()  # the held request's connection drops; it is sent again
        closer.join(30)
        assert shipper.flush(20), shipper.stats()
    finally:
        if closer is not None:
            closer.join(30)
        shipper.close()
    received = sorted(item["data_id"] for item in fake_humanloop.received)
    assert received == sorted([f"before-{n}" for n in range(5)] + [f"during-{n}" for n in range(5)])
    assert shipper.stats().pending == 0
