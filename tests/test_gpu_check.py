"""tools/gpu_check.py's logic, with no GPU and no network: the wheel list (requirements followed through markers
and extras, the machine's packages never carried, one version per package), the steps for each --device, the
report written from step results, and benchmarks/gpu_check.md before the first GPU run."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from rehearsal.env import read_pins

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the GPU machine's is 3.12)


@pytest.fixture(scope="module")
def gc(repo_root):
    spec = importlib.util.spec_from_file_location("gpu_check", repo_root / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def _meta(name, version, *requires):
    return "\n".join([f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]) + "\n"


def test_top_level_is_what_the_check_imports_that_the_machine_lacks(gc, repo_root):
    top = {Requirement(r).name for r in gc.top_level((repo_root / "pyproject.toml").read_text())}
    # the lazy imports the CUDA tests, the rehearsal (kernels, stand-in TLS, Drive) and the bench need
    assert top == {"ultralytics-thop", "gdown", "papermill", "nbclient", "nbformat", "ipykernel", "ipywidgets",
                   "trustme"}
    assert not any(gc.on_machine(n) for n in top)
    assert gc.on_machine("torch") and gc.on_machine("nvidia-cudnn-cu13") and gc.on_machine("Markdown")
    # the machine's torch is Colab's (the rehearsal and the check meet the same torch)
    assert "torch==2.11.0" in read_pins(repo_root)


def test_requires_follows_markers_and_asked_extras(gc):
    meta = _meta("x", "1", "a>=1", 'b; python_version < "3.10"', 'c; extra == "socks"', 'd; sys_platform == "win32"',
                 'e>2; python_version >= "3.12"')
    assert gc.requires(meta) == ["a>=1", "e>2"]
    assert gc.requires(meta, ["socks"]) == ["a>=1", "c", "e>2"]


INDEX = {  # name -> version -> Requires-Dist
    "top": {"1.0": ["mid>=1", "torch", "requests[socks]"]},
    "mid": {"1.0": ["leaf"], "3.0": ["leaf", "numpy"]},
    "other": {"2.0": ["deep"]},
    "deep": {"1.0": ["mid<2"]},
    "leaf": {"0.1": []},
    "requests": {"2.32": ["idna", 'PySocks!=1.5.7; extra == "socks"']},
    "pysocks": {"1.7.1": []},
}


def _fake_fetch(gc, calls):
    def fetch(reqs):
        calls.append(sorted(reqs))
        got = {}
        for text in reqs:
            req = Requirement(text)
            name = req.name.lower()
            version = max((v for v in INDEX[name] if req.specifier.contains(v)), key=Version)
            got[name] = gc.Wheel(req.name, version, _meta(req.name, version, *INDEX[name][version]))
        return got
    return fetch


def test_plan_one_version_each_never_the_machines(gc):
    calls = []
    wheels = gc.plan(["top", "other"], _fake_fetch(gc, calls))
    assert {n: w.version for n, w in wheels.items()} == {"top": "1.0", "other": "2.0", "deep": "1.0", "mid": "1.0",
                                                         "leaf": "0.1", "pysocks": "1.7.1"}
    fetched = [r for batch in calls for r in batch]
    assert not any(Requirement(r).name in ("torch", "numpy", "idna") for r in fetched)  # the machine's
    assert "requests" in fetched  # read for its socks extra only, not carried
    # mid 3.0 first (the newest for >=1), then 1.0 once deep asked for <2: one version left
    assert calls[1] == ["deep", "mid>=1", "requests"] and calls[2] == ["PySocks!=1.5.7", "leaf", "mid<2,>=1"]


def test_steps_for_each_device(gc, tmp_path, repo_root):
    cuda = {s.name: s.command for s in gc.step_commands("cuda", "py", tmp_path / "w", tmp_path)}
    cpu = {s.name: s.command for s in gc.step_commands("cpu", "py", tmp_path / "w", tmp_path)}
    assert list(cuda) == ["install", "cuda tests", "rehearsal", "bench"]
    assert cuda["install"][:4] == ["py", "-m", "pip", "install"] and "--no-index" in cuda["install"]
    assert cuda["install"][-2:] == ["-r", str(tmp_path / "w" / "requirements.txt")]
    assert cuda["cuda tests"][-1] == "tests/test_cuda.py"
    for device, steps in (("cuda", cuda), ("cpu", cpu)):
        rehearse = steps["rehearsal"]
        assert rehearse[1] == str(repo_root / "tools" / "rehearse.py")  # the rehearsal is a tool, not a command
        assert rehearse[rehearse.index("--device") + 1] == device and "normal" in rehearse
        assert steps["bench"][steps["bench"].index("--device") + 1] == device
    assert "--amp" in cuda["bench"] and "--amp" not in cpu["bench"]  # AMP is CUDA's


def test_report_from_step_results(gc, tmp_path):
    steps = gc.step_commands("cuda", "/opt/py", tmp_path / "w", tmp_path)
    for s, rc, secs, out in zip(steps[:3], (0, 0, 1), (3.0, 40.0, 200.0), ("", "4 passed in 39.1s\n", "x\n" * 5)):
        s.returncode, s.seconds, s.output = rc, secs, out
    steps[2].output += "Traceback: the notebook failed"
    rehearsal = {"kernel_python_version": "3.12.3", "kernel_torch": "2.11.0+cu130", "device": "cuda", "ok": False,
                 "seconds": 199.0, "scenarios": {"normal": {"notebooks": [
                     {"notebook": "00_setup", "status": "ok", "seconds": 12.5},
                     {"notebook": "01_rank_generation", "status": "failed", "seconds": 3.0}],
                     "checks": [{"check": "01_rank_generation ran", "ok": False, "detail": "CUDA error"}]}}}
    md = gc.report_markdown("cuda", {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "cuda": "13.0",
                                     "python": "3.12.3"}, steps, rehearsal, 54)
    assert md.startswith(gc.GENERATED + "\n# GPU check\n")
    assert "| device | NVIDIA H100 80GB HBM3 (cuda) |" in md and "| torch | 2.11.0+cu130 (CUDA 13.0) |" in md
    assert "| result | 2 of 4 steps passed in 243 s |" in md
    assert "| cuda tests | `python -m pytest -q -p no:cacheprovider tests/test_cuda.py` | 40.0 | ok |" in md
    assert "| rehearsal |" in md and "| 200.0 | FAILED (exit 1) |" in md
    assert "| bench |" in md and "| 0.0 | not run |" in md
    assert "### rehearsal: the output's end" in md and "Traceback: the notebook failed" in md
    assert "4 passed in 39.1s" in md
    assert "| 00_setup | ok | 12.5 |" in md and "- check failed: 01_rank_generation ran (CUDA error)" in md
    assert "## bench" not in md  # no bench table without a bench that ran


def test_report_of_a_cpu_rehearsal_carries_the_bench_table(gc, tmp_path):
    steps = gc.step_commands("cpu", "py", tmp_path, tmp_path)
    for s in steps:
        s.returncode = 0
    steps[3].output = "Intel (cpu), torch 2.11.0, 2 threads, batch 1\n| model | ms |\n|---|---|\n| vgg16-ssd | 900 |\n"
    md = gc.report_markdown("cpu", {"device": "x86_64", "torch": "2.11.0", "python": "3.12.1"}, steps, None, 54)
    assert "# GPU check, rehearsed on a CPU (--device cpu)" in md and "4 of 4 steps passed" in md
    assert md.rstrip().endswith("Intel (cpu), torch 2.11.0, 2 threads, batch 1\n| model | ms |\n|---|---|\n"
                                "| vgg16-ssd | 900 |")
    assert "No rehearsal.json was written." in md


def test_committed_report_is_generated(gc, repo_root):
    text = (repo_root / "benchmarks" / "gpu_check.md").read_text()
    # before the first GPU run: the placeholder, which says so and how to produce the figures
    if "| device |" not in text:
        assert text == gc.placeholder_markdown()
        assert "No GPU figures exist yet" in text and 'carry: [".gpu-wheels"]' in text and gc.DEVICE_COMMAND in text
    else:
        assert text.startswith(gc.GENERATED + "\n# GPU check\n") and "(cuda) |" in text


def test_device_option(gc):
    with pytest.raises(SystemExit) as e:
        gc.main(["run", "--device", "tpu"])
    assert e.value.code == 2


def test_missing_wheels_is_a_recorded_failure(gc, tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "_machine", lambda python, env: {"device": "cpu", "torch": "x", "python": "y"})
    monkeypatch.setattr(gc, "run_step", lambda step, env, timeout, log: setattr(step, "returncode", 0) or step)
    md = tmp_path / "report.md"
    assert gc.run_check("cpu", tmp_path / "none", tmp_path / "work", md, tmp_path / "out", log=lambda m: None) == 1
    text = md.read_text()
    assert "| install |" in text and "FAILED (exit 2); " in text and "make gpu-wheels" in text
    assert "3 of 4 steps passed" in text  # the next steps still ran
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.md", "steps.log"]


def test_lib_never_imports_tools(repo_root):
    for path in (repo_root / "lib").rglob("*.py"):
        assert "gpu_check" not in path.read_text(), path


def test_wheel_listing_has_one_version_per_package(gc, repo_root):
    listing = repo_root / ".gpu-wheels" / "wheels.json"
    if not listing.is_file():
        pytest.skip("no .gpu-wheels here (make gpu-wheels, with PyPI)")
    wheels = json.loads(listing.read_text())
    names = [gc._canon(w["name"]) for w in wheels]
    assert len(names) == len(set(names)) and not any(gc.on_machine(n) for n in names)
