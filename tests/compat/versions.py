"""A compat module's checked range against what is installed and what pyproject allows."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def _declared(distribution: str) -> list[SpecifierSet]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    found = [Requirement(line) for group in groups for line in group]
    return [r.specifier for r in found if r.name.lower() == distribution.lower()]


def assert_checked_range(distribution: str, checked: str, compat_module: str) -> None:
    """Fails loudly when the installed version, or the range pyproject allows, is not ``checked``."""
    installed = version(distribution)
    assert installed in SpecifierSet(checked), (
        f"{distribution} {installed} is installed, but {compat_module} was checked against {checked}: "
        f"re-check every assumption its docstring lists against {installed}, then update its range "
        "and pyproject's together"
    )
    declared = _declared(distribution)
    assert declared, f"pyproject.toml declares no bound for {distribution} ({compat_module} relies on it)"
    for specifier in declared:
        assert specifier == SpecifierSet(checked), (
            f"pyproject.toml allows {distribution}{specifier}, but {compat_module} was checked against "
            f"{checked}: widen a bound only after re-checking the module's assumptions"
        )
