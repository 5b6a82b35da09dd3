"""The rehearsal (``tools/rehearse.py``): the Colab user's path (``PROFILE = "full"``, *Run all*) without network.

For each scenario (:mod:`rehearsal.scenarios`) it serves the stand-in world on 127.0.0.1
(:mod:`rehearsal.standin`), points ``HRANK_SSD_MANIFEST`` at the world's manifest, and executes the notebooks in
order, each in a kernel of its own (its Python: :func:`rehearsal.env.colab_env`), from a fresh copy of the
checkout (as Colab's clone: no ``../shared`` beside it), with the ``full-rehearsal`` profile, on ``device``.
Then it checks what a user would look at (:mod:`rehearsal.checks`). Output: ``<out>/`` (normal) and
``<out>/<scenario>/``, each with ``notebooks/``, ``results/``, ``report.md``, ``report.html``; and
``<out>/rehearsal.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from hrank_ssd.course.notebooks import execute_one, notebook_params
from hrank_ssd.course.results import NOTEBOOKS, repo_root
from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.io.manifest import MANIFEST_ENV
from hrank_ssd.io.verify import RECORD_NAME
from hrank_ssd.io.voc_download import VOC_SETS
from rehearsal.checks import scenario_checks
from rehearsal.env import copy_checkout, kernel_info
from rehearsal.scenarios import SCENARIO_NOTEBOOKS, SCENARIOS, serve
from rehearsal.standin import StandInWorld
from rehearsal.world import World, build_world

PROFILE = "full-rehearsal"
KERNEL = "hrank-ssd-rehearsal"
REPORTED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "ipywidgets", "ipykernel", "gdown",
                     "opencv-python", "opencv-python-headless", "papermill", "ultralytics-thop")


# ------------------------------------------------------------------------------ environment


def _kernel_spec(folder: Path, python: Path) -> Path:
    """A kernelspec running ``python`` (found through ``JUPYTER_PATH=folder``)."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec / "kernel.json", json.dumps({
        # -Xfrozen_modules=off: ipykernel 6.17's debugger (Colab's) warns about frozen modules at every start
        "argv": [str(python), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hrank-ssd rehearsal", "language": "python"}, indent=1))
    return folder


def _packages(python: Path) -> Dict[str, Optional[str]]:
    code = ("import json, sys, importlib.metadata as m\n"
            "def v(n):\n    try: return m.version(n)\n    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({n: v(n) for n in sys.argv[1:]}))")
    done = subprocess.run([str(python), "-c", code, *REPORTED_PACKAGES], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


@contextmanager
def _environ(values: Dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------ one scenario


def _error_outputs(notebook: Path) -> List[str]:
    """The error outputs (and tracebacks printed to stderr) an executed notebook shows."""
    if not notebook.is_file():
        return []
    found = []
    for cell in json.loads(notebook.read_text()).get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {out.get('evalue', '')[:200]}")
            elif out.get("name") == "stderr" and "Traceback (most recent call last)" in "".join(out.get("text", "")):
                found.append("traceback printed to stderr")
    return found


def _downloads(work: Path) -> Dict[str, dict]:
    """Every ``downloads.json`` under ``work`` (the manifest artifacts' records, and the VOC tars', which are
    recorded under their file names), keyed by manifest name."""
    by_tar = {tar: f"voc-{name}" for name, (_, tar, _) in VOC_SETS.items()}
    got = {}
    for record in sorted(work.rglob(RECORD_NAME)):
        for name, info in json.loads(record.read_text()).items():
            got[by_tar.get(name, name)] = info
    return got


def run_scenario(scenario: str, world: World, checkout: Path, run_dir: Path, jupyter: Path,
                 notebooks: Sequence[str] = NOTEBOOKS, log: Callable[[str], None] = print,
                 device: str = "cpu") -> dict:
    """Serve ``world`` as ``scenario`` says and run ``notebooks`` from ``checkout`` into ``run_dir`` on
    ``device``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(exist_ok=True)
    params = notebook_params(PROFILE, run_dir, run_dir / "work", device)
    rows = []
    start = time.perf_counter()
    with StandInWorld(world.folder / f"standin-{scenario}") as standin:
        plan = serve(world, standin, scenario)
        env = {**standin.environ(), **plan.env, MANIFEST_ENV: str(world.manifest.resolve()),
               "JUPYTER_PATH": str(jupyter),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout / "lib"), os.environ.get("PYTHONPATH")]))}
        with _environ(env):
            for name in notebooks:
                t0 = time.perf_counter()
                row = {"notebook": name, "status": "ok", "error": ""}
                try:
                    execute_one(checkout / "notebooks" / f"{name}.ipynb", out_dir, params, cwd=checkout,
                                kernel_name=KERNEL, log=lambda msg: log(msg.replace("[course]", f"[{scenario}]")))
                except HRankError as e:
                    row.update(status="failed", error=str(e))
                    log(f"[{scenario}] {e}")
                row["seconds"] = round(time.perf_counter() - t0, 1)
                row["error_outputs"] = _error_outputs(out_dir / f"{name}.ipynb")
                rows.append(row)
        requests = list(standin.requests)
    got = _downloads(run_dir / "work")
    checks = scenario_checks(run_dir, world, plan, rows, got, requests)
    return {"scenario": scenario, "run_dir": str(run_dir), "seconds": round(time.perf_counter() - start, 1),
            "notebooks": rows, "expected_sources": plan.sources, "downloads": got,
            "requests": requests, "checks": checks, "ok": all(c["ok"] for c in checks)}


# ------------------------------------------------------------------------------ the whole rehearsal


def rehearse(out: Path, scenarios: Sequence[str] = SCENARIOS, python: Optional[Path] = None,
             notebooks: Optional[Sequence[str]] = None, train_images: int = 16, test_images: int = 8,
             log: Callable[[str], None] = print, device: str = "cpu") -> dict:
    """Build the world, copy the checkout, run each scenario with the notebooks on ``device`` (``notebooks``, else
    the scenario's own: :data:`SCENARIO_NOTEBOOKS`, all seven by default); write ``out/rehearsal.json``; return it."""
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise HRankError(f"unknown scenario {', '.join(unknown)}: choose among {', '.join(SCENARIOS)}")
    if train_images < 2 or test_images < 1:
        raise HRankError("--train_images must be at least 2 and --test_images at least 1")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    repo = repo_root()
    start = time.perf_counter()
    log(f"[rehearse] building the stand-in world in {out / 'world'}")
    world = build_world(out / "world", repo, train_images, test_images)
    checkout = copy_checkout(repo, out / "hrank-ssd")
    python = Path(python) if python else Path(sys.executable)
    jupyter = _kernel_spec(out / "jupyter", python)
    packages = _packages(python)
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "profile": PROFILE, "machine": platform.platform(),
               "processor": platform.processor() or platform.machine(), "device": device,
               **_kernel_fields(python, packages), "packages": packages,
               "world": {"folder": str(world.folder), "voc_images": world.voc_source, "train_images": train_images,
                         "test_images": test_images},
               "scenarios": {}}
    for scenario in scenarios:
        run_dir = out if scenario == "normal" else out / scenario
        log(f"[rehearse] scenario {scenario}: notebooks into {run_dir / 'notebooks'}")
        own = notebooks or SCENARIO_NOTEBOOKS.get(scenario, NOTEBOOKS)
        summary["scenarios"][scenario] = run_scenario(scenario, world, checkout, run_dir, jupyter, own, log, device)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["ok"] = all(s["ok"] for s in summary["scenarios"].values())
    atomic_write_text(out / "rehearsal.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _kernel_fields(python: Path, packages: Dict[str, Optional[str]]) -> dict:
    """``rehearsal.json``'s kernel fields: its interpreter, Python and torch versions, and its venv's record
    (``colab_env``: the Python it was made with, ``fallback`` when Colab's was not found)."""
    info = kernel_info(python)
    return {"kernel_python": info["python"], "kernel_python_version": info["python_version"],
            "kernel_torch": packages.get("torch"), "colab_env": info["colab_env"]}


def kernel_lines(summary: dict) -> List[str]:
    """The summary's first lines: where the kernel ran, with which Python and torch, and a fallback's warning."""
    pk, env = summary["packages"], summary.get("colab_env") or {}
    lines = [f"rehearsal of the full profile ({summary['profile']}) on {summary['processor']}, notebooks on "
             f"{summary.get('device', 'cpu')}; kernel Python {summary.get('kernel_python_version')}, torch "
             f"{summary.get('kernel_torch')} ({summary['kernel_python']}; numpy {pk.get('numpy')}, ipywidgets "
             f"{pk.get('ipywidgets')})"]
    if not env:
        lines.append("kernel: this Python, not a Colab-like venv (make rehearse, or --colab_env, makes one)")
    elif env.get("fallback"):
        lines.append(f"WARNING: not Colab's Python {env['colab_python']} ({env['fallback']}); pins not installed: "
                     f"{', '.join(env['pins_left_out']) or 'none'}")
    else:
        lines.append(f"kernel: Colab's Python {env['colab_python']} with every pin of the Colab pins file")
    return lines


def summary_lines(summary: dict) -> List[str]:
    """The printed summary: the kernel, a line per notebook and per failed check, then the verdict."""
    lines = kernel_lines(summary)
    for name, sc in summary["scenarios"].items():
        lines.append(f"{name}: {'ok' if sc['ok'] else 'FAILED'} in {sc['seconds']:.0f} s ({sc['run_dir']})")
        for nb in sc["notebooks"]:
            lines.append(f"  {nb['notebook']:<20} {nb['status']:<7} {nb['seconds']:7.1f} s")
        for name_, info in sorted(sc["downloads"].items()):
            lines.append(f"  downloaded {name_:<20} from {info['source']}")
        lines += [f"  check failed: {c['check']} ({c['detail'][:200]})" for c in sc["checks"] if not c["ok"]]
    lines.append(f"rehearsal {'passed' if summary['ok'] else 'FAILED'} in {summary['seconds']:.0f} s")
    return lines
