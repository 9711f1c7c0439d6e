"""Start the real services, send a corpus case to a server, and reduce an answer to what is compared."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from support import ROOT, child_env

from fidelity.corpus import Case

#: Pythons with another FastAPI/pydantic stack to test against too (os.pathsep-separated).
OTHER_PYTHONS_ENV = "HUMANLOOP_FIDELITY_PYTHONS"

Key = tuple[Optional[int], str]


@dataclass(frozen=True)
class RealService:
    """A running ``fidelity.service``: its base URL and the pydantic major version under it."""

    base_url: str
    flavour: str
    python: str


@contextmanager
def real_service(python: str = sys.executable, timeout: float = 60.0) -> Iterator[RealService]:
    """Run the FastAPI service under ``python`` in a child process until the block ends."""
    process = subprocess.Popen(
        [python, "-m", "fidelity.service"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # uvicorn's tracebacks for the 500s the corpus provokes
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the child prints it once uvicorn accepts requests
        words = line.split()
        if len(words) != 3 or words[0] != "ready":
            raise RuntimeError(f"the service under {python} did not start: {line!r}")
        flavour = "v" + words[2].removeprefix("pydantic=")
        yield RealService(f"http://127.0.0.1:{words[1]}/v4", flavour, python)
    finally:
        process.kill()
        process.wait(timeout)
        if process.stdout is not None:
            process.stdout.close()


def other_pythons() -> list[str]:
    """Interpreters named in HUMANLOOP_FIDELITY_PYTHONS, to run their services alongside."""
    return [path for path in os.environ.get(OTHER_PYTHONS_ENV, "").split(os.pathsep) if path]


@dataclass(frozen=True)
class Outcome:
    """What is compared: the status and, for a 422, what its entries name."""

    status: int
    #: (item index or None, field) named by each 422 entry, union tags stripped; ``(None, "")``
    #: for an entry about the body as a whole (including the other branch of the body's union).
    named: frozenset[Key]
    #: The exact ``loc`` of each 422 entry.
    locs: frozenset[tuple[Union[str, int], ...]]
    body: bytes

    def detail(self) -> Any:
        """The parsed ``detail`` of the answer (None if it is not JSON)."""
        try:
            return json.loads(self.body).get("detail")
        except (ValueError, AttributeError):
            return None


def named_by(loc: Any) -> Key:
    """(item index, field) for one ``loc``: tags dropped, list positions as ``field[i]``."""
    index: Optional[int] = None
    field = ""
    for segment in list(loc)[1:]:
        if type(segment) is int:
            if field:
                field += f"[{segment}]"
            elif index is None:
                index = segment
        elif isinstance(segment, str) and not field:
            if segment.startswith("list[") or segment == "FeedbackRequest":
                continue
            field = segment
    return index, field


def send(base_url: str, case: Case, timeout: float = 30.0) -> Outcome:
    """Send one case (exactly its bytes and headers) and reduce the answer to an Outcome."""
    split = urlsplit(base_url)
    connection = http.client.HTTPConnection(split.hostname or "", split.port, timeout=timeout)
    try:
        connection.request(
            case.method,
            case.path,
            body=case.body,
            headers={**case.headers(), "Connection": "close"},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    named: set[Key] = set()
    locs: set[tuple[Union[str, int], ...]] = set()
    if response.status == 422:
        detail = json.loads(body).get("detail")
        for entry in detail if isinstance(detail, list) else []:
            named.add(named_by(entry["loc"]))
            locs.add(tuple(entry["loc"]))
    return Outcome(response.status, frozenset(named), frozenset(locs), body)


def agree(ours: Outcome, theirs: Outcome) -> bool:
    """Same status, and for a 422 the same (item index, field) set."""
    return ours.status == theirs.status and ours.named == theirs.named
