"""Packaging: pyproject.toml declares compatible ranges (DGL only as an extra), the pinned default
stack (requirements-pinned.txt, which environment.yml repeats) lies within them, whatever stack is
installed lies within them, and where the pinned stack is installed DGL imports with it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from avel_dgl import graph
from helpers import needs_dgl

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pinned() -> list[str]:
    lines = (ROOT / "requirements-pinned.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pin_versions() -> dict[str, str]:
    pins = {}
    for pin in _pinned():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s,;]+)", pin)
        assert match, f"requirements-pinned.txt: expected 'name==version', found '{pin}'"
        pins[match.group(1).lower()] = match.group(2)
    return pins


def _environment_pins() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml: expected one pip: section"
    return [p for p in pip[0] if not p.startswith("-e")]  # '-e .[dgl,test]' installs the project itself


def _requirements(*extras: str) -> list[Requirement]:
    found = PYPROJECT["dependencies"] + [r for e in extras for r in PYPROJECT["optional-dependencies"][e]]
    return [Requirement(r) for r in found]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_dgl_is_an_extra_not_a_hard_requirement():
    hard = {r.name.lower() for r in _requirements()}
    assert "dgl" not in hard and "torchdata" not in hard and "pytest" not in hard
    assert "dgl" in {r.name for r in _requirements("dgl")}
    assert "pytest" in {r.name for r in _requirements("test")}


def test_ranges_admit_the_declared_pythons_numpys_and_torches():
    python = SpecifierSet(PYPROJECT["requires-python"])
    assert "3.11.0" in python and "3.12.0" in python and "3.10.9" not in python
    spec = {r.name: r.specifier for r in _requirements()}
    assert all(v in spec["numpy"] for v in ("1.26.4", "2.0.0", "2.4.1"))
    assert all(v in spec["torch"] for v in ("2.2.1", "2.9.1", "2.11.0", "2.15.0"))
    assert "2.2.0" not in spec["torch"]


def test_pinned_stack_agrees_with_environment_and_lies_in_the_ranges():
    pinned, environment = _pinned(), _environment_pins()
    assert len(set(pinned)) == len(pinned)
    assert sorted(pinned) == sorted(environment)
    pins = _pin_versions()
    required = {r.name.lower() for r in _requirements("dgl", "test")}
    assert set(pins) == required, "requirements-pinned.txt pins exactly the packages pyproject.toml names"
    for req in _requirements("dgl", "test"):
        assert pins[req.name.lower()] in req.specifier, f"{req.name}: pinned {pins[req.name.lower()]}, range {req}"


def test_installed_stack_lies_in_the_ranges():
    for req in _requirements("test") + (_requirements("dgl") if graph.dgl is not None else []):
        installed = _installed(req.name)
        assert installed is not None, f"{req.name}: not installed"
        assert req.specifier.contains(installed, prereleases=True), f"{req.name}: installed {installed}, range {req}"


def test_environment_python_satisfies_requires_python():
    requires = SpecifierSet(PYPROJECT["requires-python"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=", 1)[1] + ".0" in requires, f"environment.yml {python} vs requires-python {requires}"


@needs_dgl
def test_where_dgl_imports_the_pinned_stack_is_installed():
    import dgl
    import dgl.graphbolt  # noqa: F401  (needs torchdata<0.8 and the matching torch)

    assert dgl.backend.backend_name == "pytorch"
    assert graph.dgl is dgl and graph.DEFAULT_KERNEL == "dgl"
    for name, version in _pin_versions().items():
        assert _installed(name) == version, f"{name}: pinned {version}, installed {_installed(name)}"


def test_nothing_imports_conftest_or_a_test_module():
    """conftest.py is pytest's (fixtures); what tests and scripts share is a plain module
    (tests/helpers.py, tests/video_files.py), so no module brings another test module's tests along."""
    def imports(folders, names):
        pattern = re.compile(rf"^\s*(?:from|import)\s+({names})\b", re.MULTILINE)
        return [f"{path.relative_to(ROOT)}: {match.group(1)}" for folder in folders
                for path in (ROOT / folder).rglob("*.py") for match in pattern.finditer(path.read_text())]

    assert imports(["tests", "scripts", "benchmarks", "avel_dgl", "cli"], r"conftest|test_\w+") == []


def test_readme_layout_names_every_module_and_script():
    """README's Layout section is where a newcomer finds a module: it names every one."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    files = [path for folder in ("avel_dgl", "cli", "benchmarks", "scripts")
             for path in (ROOT / folder).rglob("*") if path.suffix in (".py", ".sh") and path.name != "__init__.py"]
    assert len(files) > 40
    assert [str(path.relative_to(ROOT)) for path in files if path.name not in layout] == []
