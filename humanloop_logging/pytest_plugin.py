"""pytest plugin: the ``fake_humanloop`` fixture, registered through the ``pytest11`` entry point.

This is the only module of the package that imports pytest, so applications that merely use
:mod:`humanloop_logging.testing` outside pytest never pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import FakeHumanloop

__all__ = ["fake_humanloop"]


@pytest.fixture
def fake_humanloop() -> Iterator[FakeHumanloop]:
    """A started local Humanloop stand-in, stopped after the test so no thread or socket leaks."""
    with FakeHumanloop() as fake:
        yield fake
