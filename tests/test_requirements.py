"""Requirement ranges: requirements.txt mirrors pyproject.toml, and every range (and the Python versions) admits Colab's."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from rehearsal.env import colab_python_version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

COLAB = "colab/colab-gpu-2026-08.txt"


def _project(repo_root):
    return tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]


def _pyproject(repo_root):
    project = _project(repo_root)
    return project["dependencies"], project["optional-dependencies"]


def _lines(path):
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]


def test_requirements_txt_lists_what_pyproject_installs(repo_root):
    core, extras = _pyproject(repo_root)
    wanted = core + [r for name in ("colab", "speed", "dev") for r in extras[name]]
    assert sorted(_lines(repo_root / "requirements.txt")) == sorted(wanted)


def test_every_range_admits_what_colab_ships(repo_root):
    pins = {}
    for line in _lines(repo_root / COLAB):
        name, version = line.split("==")
        pins[canonicalize_name(name)] = version
    core, extras = _pyproject(repo_root)
    checked = []
    for text in core + extras["colab"]:
        req = Requirement(text)
        version = pins.get(canonicalize_name(req.name))
        if version is not None:
            assert req.specifier.contains(version, prereleases=True), f"{text} refuses Colab's {version}"
            checked.append(req.name)
    # the packages Colab preinstalls and the notebooks import are all covered by the check
    for name in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "gdown", "ipywidgets", "ipykernel",
                 "nbformat", "nbclient"):
        assert name in checked, name


def test_pyproject_declares_colabs_python(repo_root):
    python = colab_python_version(repo_root)  # the pins file's header: Colab's Python
    assert python == "3.13"
    project = _project(repo_root)
    assert SpecifierSet(project["requires-python"]).contains(f"{python}.0"), project["requires-python"]
    assert f"Programming Language :: Python :: {python}" in project["classifiers"]
    # every Python the classifiers name is one requires-python admits
    for c in project["classifiers"]:
        if c.count("::") == 2 and c.rsplit(":: ", 1)[1].count(".") == 1:
            assert SpecifierSet(project["requires-python"]).contains(c.rsplit(":: ", 1)[1] + ".0"), c
