"""``python -m humanloop_logging``: the same command line as the ``humanloop-logging`` script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
