"""Capture real 422 ``detail`` lists from the real services, and measure them.

    PYTHONPATH=tests python -m fidelity.capture --python /venv-pydantic-1/bin/python \
        --python /venv/bin/python [--write]

For each service it sends the bodies below and prints, per body, the status, how many entries
the 422 has, how many items they name and how large the answer is. ``--write`` stores the
answers as ``tests/data/details-pydantic-<v1|v2>.json``, the fixtures of ``tests/test_details.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

from fidelity.corpus import Case
from fidelity.harness import real_service, send
from humanloop_logging._details import item_errors

DATA = Path(__file__).resolve().parents[1] / "data"


def _item(index: int, size: int = 20) -> dict[str, Any]:
    return {
        "type": "comment",
        "value": f"{index:06d} " + "x" * max(size - 7, 0),
        "data_id": f"data_{index}",
    }


def _batch(n: int, bad: Sequence[int], spoil: dict[str, Any], size: int = 20) -> list[Any]:
    return [{**_item(i, size), **spoil} if i in bad else _item(i, size) for i in range(n)]


def bodies() -> list[tuple[str, list[Any]]]:
    """(name, array body): what a client that always sends arrays can get back."""
    spread = {1: [50], 5: [3, 20, 50, 77, 99], 20: list(range(0, 100, 5))}
    named: list[tuple[str, list[Any]]] = []
    for k, bad in spread.items():
        named.append(
            (f"100 items, {k} with an object value", _batch(100, bad, {"value": {"a": 1}}))
        )
        named.append((f"100 items, {k} with a null type", _batch(100, bad, {"type": None})))
    named += [
        ("data_id a number", [_item(0), {**_item(1), "data_id": 5.5}]),
        ("value a list with a number", [_item(0), {**_item(1), "value": ["a", 1, "b", 2]}]),
        ("type missing", [_item(0), {"value": "good", "data_id": "d"}]),
        ("type missing and created_at bad", [{"value": 1, "created_at": "yesterday"}, _item(1)]),
        ("an item that is not an object", [_item(0), "rating", 5]),
        ("everything wrong in one item", [{"type": 3, "value": {}, "user": 1, "unset": "maybe"}]),
        ("a two-key object", [{"type": "rating", "value": {}}]),
        ("null items", [None, _item(1)]),
    ]
    return named


def sized_bodies() -> list[tuple[str, list[Any]]]:
    """Bodies of ~1 KB values, to size the 422 a transport must read."""
    return [
        (f"{n} items of ~1 KB, {k} bad", _batch(n, list(range(k)), {"type": None}, size=1000))
        for n in (100, 500)
        for k in (1, n)
    ]


def case(body: Any) -> Case:
    """The body as a request with the right key and Content-Type."""
    return Case("capture", json.dumps(body).encode("utf-8"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Send the bodies to each service, print the measurements, optionally store the details."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", action="append", default=[])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        services = [stack.enter_context(real_service(p)) for p in args.python or [sys.executable]]
        for service in services:
            print(f"== real service on pydantic {service.flavour}")
            captured = []
            sized = {name for name, _ in sized_bodies()}
            for name, body in bodies() + sized_bodies():
                outcome = send(service.base_url, case(body))
                detail = outcome.detail() if outcome.status == 422 else None
                named = item_errors(detail, len(body)) if detail is not None else {}
                print(
                    f"  {name}: {outcome.status}, {len(detail or [])} entries, "
                    f"{len(named)} items named, {len(outcome.body)} bytes"
                )
                if detail is not None and name not in sized:
                    captured.append({"name": name, "n": len(body), "detail": detail})
            if args.write:
                path = DATA / f"details-pydantic-{service.flavour}.json"
                path.write_text(json.dumps(captured, indent=1, ensure_ascii=False) + "\n")
                print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
