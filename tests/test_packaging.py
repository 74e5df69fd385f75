"""Packaging: DGL imports with the pinned stack, and pyproject.toml and environment.yml pin the
same versions (the installed ones)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _environment_pins() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml: expected one pip: section"
    return [p for p in pip[0] if not p.startswith("-e")]  # '-e .' installs the project itself


def test_dgl_and_graphbolt_import():
    import dgl
    import dgl.graphbolt  # noqa: F401  (needs torchdata<0.8 and the matching torch)

    assert dgl.backend.backend_name == "pytorch"


def test_pyproject_and_environment_pins_agree():
    project, environment = _pyproject_pins(), _environment_pins()
    assert len(set(project)) == len(project)
    assert sorted(project) == sorted(environment)


def test_every_dependency_is_pinned_exactly_and_installed_at_that_version():
    for pin in _pyproject_pins():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s,;]+)", pin)
        assert match, f"pyproject.toml: expected 'name==version', found '{pin}'"
        name, version = match.groups()
        assert metadata.version(name) == version, f"{name}: pinned {version}, installed {metadata.version(name)}"


def test_environment_python_satisfies_requires_python():
    from packaging.specifiers import SpecifierSet

    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=", 1)[1] + ".0" in requires, f"environment.yml {python} vs requires-python {requires}"
