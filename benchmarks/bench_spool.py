"""What the durable spool costs, next to the least SQLite can do with the same rows.

    python benchmarks/bench_spool.py                 # 5 rounds of 20,000 records
    python benchmarks/bench_spool.py --rounds 9 --records 50000

Rates are records per second. Every configuration runs in the same process, round after round
in a shuffled order, each on a new file in the same directory; the ratio ``spool / bare`` is taken
within a round, then the median across rounds, which cancels most of a shared machine's noise.

- ``write``: ``Spool.append`` in batches of 100 and of 1,000 (one transaction each: the owner's
  heartbeat, the insert, the size check); ``bare``: ``executemany`` of the same rows into a table
  with only an integer key, one ``BEGIN IMMEDIATE ... COMMIT`` per batch.
- ``replay``: ``Spool.claim(batch)`` then ``Spool.delete(ids)`` until the spool is empty (what
  the flush thread does after an outage); ``bare``: ``SELECT ... ORDER BY id LIMIT`` and an
  ``executemany`` delete.

Both use WAL with ``synchronous=NORMAL`` (no fsync per commit). Bodies are JSON feedback objects
of about 150 bytes. The last table is the bytes on disk per record for 10,000 records: the file
plus its WAL after a ``wal_checkpoint(TRUNCATE)``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from humanloop_logging._spool import Spool

Rows = list[tuple[str, bytes, float]]


def make_rows(count: int) -> Rows:
    rows = []
    for i in range(count):
        data_id = f"data_{i:020d}"
        body = json.dumps(
            {
                "data_id": data_id,
                "type": "rating",
                "value": random.choice(["good", "bad"]),
                "user": f"user_{i % 997:06d}@example.com",
                "created_at": "2026-11-28T12:00:00.123456+00:00",
            },
            separators=(",", ":"),
        ).encode()
        rows.append((data_id, body, time.time()))
    return rows


def bare_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, data_id TEXT, body BLOB, created REAL)"
    )
    return conn


def bare_write(conn: sqlite3.Connection, rows: Rows, batch: int) -> None:
    for start in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO t(data_id, body, created) VALUES (?, ?, ?)", rows[start : start + batch]
        )
        conn.execute("COMMIT")


def bare_replay(conn: sqlite3.Connection, batch: int) -> int:
    done = 0
    while True:
        got = conn.execute(
            "SELECT id, data_id, body FROM t ORDER BY id LIMIT ?", (batch,)
        ).fetchall()
        if not got:
            break
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("DELETE FROM t WHERE id = ?", [(row[0],) for row in got])
        conn.execute("COMMIT")
        done += len(got)
    return done


def spool_write(spool: Spool, rows: Rows, batch: int) -> None:
    for start in range(0, len(rows), batch):
        spool.append(rows[start : start + batch])


def spool_replay(spool: Spool, batch: int) -> int:
    done = 0
    while True:
        got = spool.claim(batch)
        if not got:
            break
        spool.delete([row.id for row in got])
        done += len(got)
    return done


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def one_round(directory: str, rows: Rows, batch: int, order: list[str]) -> dict[str, float]:
    """Rates of every configuration for one batch size, in ``order``, each on a new file."""
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    spool = Spool(os.path.join(directory, "spool.db"), max_bytes=1 << 30)
    spool.heartbeat()  # opened and registered before the clock starts, like the bare table
    bare = bare_connection(os.path.join(directory, "bare.db"))
    rates: dict[str, float] = {}
    for kind in order:
        if kind == "spool":
            rates["write spool"] = len(rows) / timed(lambda: spool_write(spool, rows, batch))
        else:
            rates["write bare"] = len(rows) / timed(lambda: bare_write(bare, rows, batch))
    for kind in order:
        if kind == "spool":
            rates["replay spool"] = len(rows) / timed(lambda: spool_replay(spool, batch))
        else:
            rates["replay bare"] = len(rows) / timed(lambda: bare_replay(bare, batch))
    spool.close()
    bare.close()
    return rates


def on_disk(path: str) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def sizes_and_restart(directory: str, rows: Rows) -> None:
    """Bytes per record on disk, and what a restart costs: open, adopt, first claim."""
    spool_path, bare_path = (
        os.path.join(directory, "size-spool.db"),
        os.path.join(directory, "b.db"),
    )
    spool = Spool(spool_path, max_bytes=1 << 30)
    spool_write(spool, rows, 1000)
    spool.release()
    spool.close()
    bare = bare_connection(bare_path)
    bare_write(bare, rows, 1000)
    bare.close()
    per_spool, per_bare = on_disk(spool_path) / len(rows), on_disk(bare_path) / len(rows)
    print(f"\nbytes on disk per record ({len(rows):,} records, file + WAL after a checkpoint):")
    print(f"  spool {per_spool:.0f}   bare {per_bare:.0f}   (body + data_id: ", end="")
    print(f"{statistics.mean(len(b) + len(d) for d, b, _ in rows):.0f})")
    restarted = Spool(spool_path, max_bytes=1 << 30)
    opening = timed(restarted.heartbeat)
    adopting = timed(restarted.adopt)
    claiming = timed(lambda: restarted.claim(100))
    restarted.close()
    print(
        f"restart on those records: open with integrity check {opening * 1000:.1f} ms, "
        f"adopt {adopting * 1000:.1f} ms, first claim of 100 {claiming * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    random.seed(7)
    rows = make_rows(args.records)
    mean_body = statistics.mean(len(body) for _, body, _ in rows)
    directory = tempfile.mkdtemp(prefix="bench-spool-")
    try:
        print(
            f"sqlite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
            f"{args.records} records of {mean_body:.0f}-byte bodies, {args.rounds} rounds\n"
        )
        print(f"{'':<18}{'spool rec/s':>14}{'bare rec/s':>14}{'spool/bare':>12}")
        for batch in (100, 1000):
            results: list[dict[str, float]] = []
            for _ in range(args.rounds):
                order = ["spool", "bare"]
                random.shuffle(order)
                results.append(one_round(directory, rows, batch, order))
            for what in ("write", "replay"):
                spool = statistics.median(r[f"{what} spool"] for r in results)
                bare = statistics.median(r[f"{what} bare"] for r in results)
                ratio = statistics.median(r[f"{what} spool"] / r[f"{what} bare"] for r in results)
                label = f"{what} x{batch}"
                print(f"{label:<18}{spool:>14,.0f}{bare:>14,.0f}{ratio:>12.2f}")
        sizes_and_restart(directory, make_rows(10_000))
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
