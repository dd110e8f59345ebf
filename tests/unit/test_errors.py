"""Every exception the package defines derives from one base, :class:`eksml.errors.EksmlError`,
in one of the kinds callers tell apart (bad input, a failed service) or beside an Airflow
exception that already says how the task ends."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import eksml
from eksml.errors import EksmlError, InvalidInput, PreflightError, ServiceError

PACKAGE = Path(eksml.__file__).parent


def exception_classes() -> list[type[BaseException]]:
    """The classes the package's modules define that are exceptions (found in the source, then imported)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text())
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.bases]
        if not names:
            continue
        module = importlib.import_module(".".join(("eksml", *path.relative_to(PACKAGE).with_suffix("").parts)))
        for name in names:
            cls = getattr(module, name)
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def test_every_exception_of_the_package_has_the_one_base() -> None:
    classes = exception_classes()
    assert len(classes) > 20  # the scan finds them (a broken scan would pass vacuously)
    outside = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not issubclass(cls, EksmlError))
    assert outside == [], "derive these from eksml.errors (InvalidInput, ServiceError or EksmlError)"


@pytest.mark.parametrize(("kind", "builtin"), [(InvalidInput, ValueError), (ServiceError, RuntimeError)])
def test_the_kinds_stay_what_callers_already_catch(kind: type[EksmlError], builtin: type[Exception]) -> None:
    assert issubclass(kind, builtin) and issubclass(kind, EksmlError)


def test_a_preflight_failure_is_bad_input() -> None:
    from eksml.pipeline import PreflightError as raised_by_the_pipeline

    assert raised_by_the_pipeline is PreflightError and issubclass(PreflightError, InvalidInput)
