"""Children of multiprocessing log feedback and end normally; the parent then exits normally.

``python mp_feedback.py START_METHOD KIND PREFIX N`` with KIND one of ``process`` (4 Process
objects), ``pool``, ``pool-maxtasks`` (Pool with maxtasksperchild=10) or ``executor``
(ProcessPoolExecutor). The handler is set up at import, so spawn and forkserver children, which
import this module again, have one too; fork children inherit the parent's.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import sys
from typing import Any

from humanloop_logging import FeedbackHandler

log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(FeedbackHandler())


def log_one(data_id: str) -> str:
    log.info("user rated answer", extra={"data_id": data_id, "type": "rating", "value": "good"})
    return data_id


def log_many(data_ids: list[str]) -> None:
    for data_id in data_ids:
        log_one(data_id)


def main() -> None:
    method, kind, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    # Any: typeshed types get_context(str) as BaseContext, which has no Process attribute.
    ctx: Any = multiprocessing.get_context(method)
    ids = [f"{prefix}-{n}" for n in range(count)]
    if kind == "process":
        procs = [ctx.Process(target=log_many, args=(ids[i::4],)) for i in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        codes = [proc.exitcode for proc in procs]
        assert codes == [0, 0, 0, 0], codes
    elif kind in ("pool", "pool-maxtasks"):
        pool = ctx.Pool(2, maxtasksperchild=10 if kind == "pool-maxtasks" else None)
        done = pool.map(log_one, ids, chunksize=1)
        pool.close()  # the workers end normally, not by terminate()
        pool.join()
        assert done == ids
    elif kind == "executor":
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
            done = list(executor.map(log_one, ids))
        assert done == ids
    else:
        raise SystemExit(f"unknown kind {kind}")
    print("CHILDREN-DONE", flush=True)


if __name__ == "__main__":
    main()
