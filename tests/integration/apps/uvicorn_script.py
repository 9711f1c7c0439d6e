"""A service that starts uvicorn from its own script: handler first, then ``uvicorn.run()``.

``uvicorn.run()`` configures logging with ``logging.config.dictConfig`` (uvicorn's
``LOGGING_CONFIG``) after the handler already exists. ``--exit-on-sigterm`` follows the advice
of docs/lifecycle.md and calls ``exit_on_sigterm()`` before ``uvicorn.run()``.
"""

from __future__ import annotations

import argparse
import importlib

import uvicorn

from humanloop_logging import exit_on_sigterm


def main() -> None:
    # The app module creates the handler (on the "app" logger) when imported, before uvicorn.run().
    asgi_app = importlib.import_module("asgi_app")
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--exit-on-sigterm", action="store_true")
    args = parser.parse_args()
    if args.exit_on_sigterm:
        exit_on_sigterm()
    uvicorn.run(asgi_app.app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
