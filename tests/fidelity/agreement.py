"""Print the agreement table: each stand-in configuration against each real service, on the corpus.

    PYTHONPATH=tests python -m fidelity.agreement --python /venv-pydantic-1/bin/python --python /venv/bin/python

A cell is ``bodies answered alike / bodies tried`` (same status, and for a 422 the same item
indexes and fields). ``-v`` lists the disagreements. It works with a stand-in that has no flavours
too (an older checkout first on PYTHONPATH), which then gets one row.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Optional

from fidelity.corpus import API_KEY, cases
from fidelity.harness import RealService, agree, real_service, send
from humanloop_logging.testing import FakeHumanloop


def stand_in_configs() -> list[dict[str, Any]]:
    """Every flavour x validator this stand-in offers (one empty config for one without)."""
    if "flavour" not in inspect.signature(FakeHumanloop).parameters:
        return [{}]
    from humanloop_logging._fake_validate import pydantic_available

    configs: list[dict[str, Any]] = []
    for flavour in ("v1", "v2"):
        if pydantic_available(flavour):
            configs.append({"flavour": flavour, "validator": "pydantic"})
        configs.append({"flavour": flavour, "validator": "stdlib"})
    return configs


def label(config: dict[str, Any]) -> str:
    """A row label: ``v1/pydantic``, or ``(no flavours)``."""
    return f"{config['flavour']}/{config['validator']}" if config else "(no flavours)"


def table(
    services: Sequence[RealService], verbose: bool = False
) -> list[tuple[str, list[tuple[int, int]]]]:
    """Rows of (label, [(agreeing, tried) per service])."""
    corpus = cases()
    answers = {
        service.python: [send(service.base_url, case) for case in corpus] for service in services
    }
    rows: list[tuple[str, list[tuple[int, int]]]] = []
    for config in stand_in_configs():
        with FakeHumanloop(api_key=API_KEY, **config) as fake:
            ours = [send(fake.base_url, case) for case in corpus]
        cells = []
        for service in services:
            theirs = answers[service.python]
            agreeing = [agree(a, b) for a, b in zip(ours, theirs)]
            cells.append((sum(agreeing), len(corpus)))
            if verbose:
                for case, a, b, same in zip(corpus, ours, theirs, agreeing):
                    if not same:
                        print(
                            f"  {label(config)} vs {service.flavour}: {case.name}: "
                            f"ours {a.status} {sorted(a.named, key=str)} / "
                            f"theirs {b.status} {sorted(b.named, key=str)}"
                        )
        rows.append((label(config), cells))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start a service per ``--python`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", action="append", default=[], help="an interpreter with FastAPI")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the disagreements")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        services = [
            stack.enter_context(real_service(python)) for python in args.python or [sys.executable]
        ]
        rows = table(services, verbose=args.verbose)
    header = ["stand-in"] + [f"real pydantic {service.flavour}" for service in services]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for name, cells in rows:
        print("| " + " | ".join([name] + [f"{a}/{n}" for a, n in cells]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
