"""Session fixtures: the real FastAPI services, started once, and their answers to the corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from fidelity.corpus import cases
from fidelity.harness import Outcome, RealService, other_pythons, real_service, send


@pytest.fixture(scope="session")
def real_services() -> Iterator[list[RealService]]:
    """The service on this interpreter's FastAPI and pydantic, plus any HUMANLOOP_FIDELITY_PYTHONS."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(real_service(python))
            for python in [sys.executable, *other_pythons()]
        ]


@pytest.fixture(scope="session")
def real_answers(real_services: list[RealService]) -> dict[str, list[Outcome]]:
    """Each real service's answers to the whole corpus, by flavour."""
    return {
        service.flavour: [send(service.base_url, case) for case in cases()]
        for service in real_services
    }
