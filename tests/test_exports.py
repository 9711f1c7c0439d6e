"""The package's ``__all__`` is honest: everything listed exists, every public class is listed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import humanloop_logging

#: Public modules imported on their own (``import humanloop_logging.testing``), not re-exported.
STANDALONE = {
    "humanloop_logging.testing",
    "humanloop_logging.pytest_plugin",
    "humanloop_logging.cli",
    "humanloop_logging.__main__",
}


def package_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(humanloop_logging.__path__, "humanloop_logging.")
        if info.name not in STANDALONE
    ]
    return sorted(names)


def test_every_name_in_all_exists() -> None:
    """Each name in humanloop_logging.__all__ can be imported from the package, once."""
    exported = humanloop_logging.__all__
    assert len(exported) == len(set(exported))
    missing = [name for name in exported if not hasattr(humanloop_logging, name)]
    assert missing == []


def test_every_public_member_of_the_package_is_in_all() -> None:
    """Every public non-module attribute of the package namespace is listed in __all__."""
    public = {
        name
        for name, value in vars(humanloop_logging).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(humanloop_logging.__all__) == set()


@pytest.mark.parametrize("module_name", package_modules())
def test_public_classes_of_each_module_are_exported(module_name: str) -> None:
    """A class a module declares public (in its own __all__) is exported by the package."""
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", ())
    classes = [
        name
        for name in declared
        if inspect.isclass(getattr(module, name, None))
        and getattr(module, name).__module__ == module_name
    ]
    not_exported = [name for name in classes if name not in humanloop_logging.__all__]
    assert not_exported == [], f"{module_name} declares public but the package hides them"


def test_exported_exceptions_share_one_base() -> None:
    """Every exported exception derives from HumanloopLoggingError."""
    for name in humanloop_logging.__all__:
        value = getattr(humanloop_logging, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, humanloop_logging.HumanloopLoggingError), name


def test_version_is_a_string() -> None:
    """__version__ is exported and is a non-empty string."""
    assert isinstance(humanloop_logging.__version__, str)
    assert humanloop_logging.__version__
