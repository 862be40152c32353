"""The package as pip builds it: a non-editable install must find every
config; and constraints.txt, the versions `make setup` installs, must be
what pyproject.toml asks for and what the suite runs on."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    """constraints.txt's pins that apply to this interpreter and platform: {name: version}."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith(("#", " ")):
            pin = Requirement(line)
            if pin.marker is None or pin.marker.evaluate():
                (spec,) = pin.specifier
                assert spec.operator == "==", f"constraints.txt: {line!r} is not a pin"
                pins[canonicalize_name(pin.name)] = spec.version
    return pins


def test_the_wheel_ships_every_config_and_its_license(tmp_path):
    # built from a copy, so that setuptools' build/ stays out of the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for name in ("jaxrl", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("jaxrl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    shipped = {n.removeprefix("jaxrl/configs/") for n in names if n.startswith("jaxrl/configs/") and n.endswith(".yaml")}
    expected = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped == expected
    assert "License-Expression: Apache-2.0" in metadata


def test_constraints_pin_every_requirement_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for line in project["dependencies"] + project["optional-dependencies"]["test"]:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"constraints.txt has no pin for {line!r}: run make lock"
        assert wanted.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {line!r}: run make lock"
        )


def test_the_suite_runs_on_the_pinned_versions():
    wrong = {}
    for name, pinned in _pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, (
        f"installed versions differ from constraints.txt, as (pinned, installed): {wrong}; "
        "install with make setup (pip install -c constraints.txt -e '.[test]')"
    )
