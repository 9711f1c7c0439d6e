"""The test suite on every supported Python (``nox -l`` lists the sessions).

An interpreter CI expects but cannot find is an error, not a skip. ``.ci/run`` runs the full suite
on 3.11 itself (the README's test command) and these sessions for the other versions.
"""

from __future__ import annotations

import nox

nox.options.error_on_missing_interpreters = True
#: uv makes and fills each session's virtualenv in seconds where venv and pip take most of a
#: minute (five sessions in every CI run); it is in the ci extra.
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lifecycle", "fidelity_pydantic_v1"]

#: The Python CI runs everything on; the others run the lifecycle subset below.
MAIN_PYTHON = "3.11"
OTHER_PYTHONS = ["3.9", "3.10", "3.12", "3.13"]

#: Exit, close, signals, a frozen process, dictConfig, fork, the spool's file handling, requests
#: in parallel, the loguru sink (loguru's exit hook and writer thread) and the real stacks: what
#: depends on the interpreter's own shutdown, signal, threading, sqlite3 and multiprocessing
#: machinery.
LIFECYCLE_TESTS = [
    "tests/test_lifecycle.py",
    "tests/test_flow.py",
    "tests/test_signals.py",
    "tests/test_serverless_freeze.py",
    "tests/test_dictconfig.py",
    "tests/reliability/test_process_lifecycle.py",
    "tests/test_spool.py",
    "tests/test_loguru.py",
    "tests/integration",
]


@nox.session(python=MAIN_PYTHON)
def tests(session: nox.Session) -> None:
    """The full suite, the integration and browser tests included."""
    session.install(".[test,integration,browser]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=OTHER_PYTHONS)
def lifecycle(session: nox.Session) -> None:
    """Exit, signal, dictConfig, fork and real-stack tests on each other supported Python."""
    session.install(".[test,integration]")
    session.run("python", "-m", "pytest", *(session.posargs or LIFECYCLE_TESTS))


@nox.session(name="fidelity_pydantic_v1", python=MAIN_PYTHON)
def fidelity_pydantic_v1(session: nox.Session) -> None:
    """The fidelity tests against a service built on FastAPI 0.99 and pydantic 1."""
    session.install(".[test,integration]", "fastapi==0.99.*", "pydantic==1.10.*")
    session.run("python", "-m", "pytest", "tests/fidelity", *session.posargs)
