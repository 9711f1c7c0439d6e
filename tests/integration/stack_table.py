"""Run the stack scenarios and print what arrived and how long each shutdown took, as markdown.

    python tests/integration/stack_table.py              # every scenario, backend up and down
    python tests/integration/stack_table.py --up-only    # skip the backend-down runs
    python tests/integration/stack_table.py -k gunicorn  # scenarios whose name contains a word

"Backend up" is the local stand-in; "backend down" is a port on which nothing listens. Needs the
``integration`` extra (``pip install '.[test,integration]'``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the package "integration"

from humanloop_logging.testing import FakeHumanloop
from integration.integration_support import API_KEY, STANDARD
from integration.stack_scenarios import SCENARIOS, play

HEADER = (
    "| scenario | received/expected | duplicates | exit | shutdown s "
    "| backend down: exit | backend down: shutdown s | notes |"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-k", dest="word", default="", help="only scenarios containing this")
    parser.add_argument("--up-only", action="store_true", help="skip the backend-down runs")
    args = parser.parse_args()
    names = [name for name in SCENARIOS if args.word.lower() in name.lower()]
    backends = ("up",) if args.up_only else ("up", "down")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    start = time.monotonic()
    for backend in backends:
        for name in names:
            try:
                if backend == "up":
                    with FakeHumanloop(api_key=API_KEY) as fake:
                        outcome = play(name, fake)
                else:
                    outcome = play(name, None)
            except AssertionError as error:  # the scenario itself could not run
                print(f"{name} ({backend}): {str(error).splitlines()[0]}", file=sys.stderr)
                continue
            rows[name, backend] = outcome.row()
    print()
    print(
        "| scenario | received/expected | duplicates | exit | shutdown s | backend down: exit | backend down: shutdown s | notes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        up, down = rows.get((name, "up")), rows.get((name, "down"))
        cells = [name]
        if up:
            received = f"{up['received']}/{up['expected']}"
            cells += [received, str(up["duplicates"]), str(up["exit"]), str(up["shutdown_s"])]
        else:
            cells += ["-"] * 4
        cells += [str(down["exit"]), str(down["shutdown_s"])] if down else ["-"] * 2
        notes = [
            f"{key} {value} ({backend})"
            for backend, row in (("up", up), ("down", down))
            if row
            for key, value in row.items()
            if key not in STANDARD
        ]
        cells.append(", ".join(notes))
        print("| " + " | ".join(cells) + " |")
    print(f"\n{len(rows)} runs in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
