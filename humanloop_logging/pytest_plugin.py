"""pytest plugin: the ``fake_humanloop`` fixture, registered through the ``pytest11`` entry point.

pytest loads this module in every run of an environment where the package is installed, so it
costs nothing until the fixture is used: it imports no other module of the package (the package's
``__init__`` imports its names lazily), and the stand-in is imported inside the fixture. This is
the only module of the package that imports pytest, so applications that use
:mod:`humanloop_logging.testing` outside pytest never pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import FakeHumanloop

__all__ = ["fake_humanloop"]


@pytest.fixture
def fake_humanloop() -> Iterator[FakeHumanloop]:
    """A started local Humanloop stand-in, stopped after the test so no thread or socket leaks."""
    from .testing import FakeHumanloop  # noqa: PLC0415 (imported when first used)

    with FakeHumanloop() as fake:
        yield fake
