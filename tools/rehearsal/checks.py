"""The rehearsal's checks: what a user would look at after one scenario, against its
:class:`~rehearsal.scenarios.ScenarioPlan`.

Every notebook ran and shows no error output, except where the scenario expects a stop: ``voc-down``'s notebooks
must stop with the one-line VOC message (one line, every mirror tried, the ``$HRANK_SSD_VOC_SOURCE`` way out), and
that message must be what the user sees. Each artifact came from the source the scenario leaves working
(``downloads.json``); a published artifact the scenario withholds is not downloaded and its substitute is recorded
(``results/substitutes.json``, with the expected reason) by the notebooks that meet it; the library's class names
are announced once per notebook at most; Drive files the scenario marks are never downloaded; no damaged download
is kept; the clip and the report are notebook 06's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from hrank_ssd.course.results import read_result
from hrank_ssd.io.verify import sha256sum
from hrank_ssd.io.voc_download import VOC_SOURCE_ENV
from rehearsal.scenarios import ScenarioPlan
from rehearsal.world import World

LIBRARY_NAMES = "using the library's 20 VOC class names"  # what Course.label_file says when it falls back
# published artifact -> (its substitute's key in substitutes.json, the notebooks that meet its absence)
SUBSTITUTED = {"vgg16-ssd-hrank": ("vgg16-ssd-pruned", {"03_finetune", "04_eval_map_fps", "06_video_demo",
                                                        "08_speed_frontier"}),
               "vgg16-ssd-ranks": ("vgg16-ssd-ranks", {"01_rank_generation", "02_hrank_pruning", "03_finetune",
                                                       "04_eval_map_fps", "07_latency_pruning", "08_speed_frontier"})}


def _outputs(notebook: Path, kind: str) -> List[str]:
    """The texts of an executed notebook's error outputs (``kind="error"``: ``ename: evalue`` in full) or of its
    stream outputs (``kind="stream"``)."""
    if not notebook.is_file():
        return []
    found = []
    for cell in json.loads(notebook.read_text()).get("cells", []):
        for out in cell.get("outputs", []):
            if kind == "error" and out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {out.get('evalue', '')}")
            elif kind == "stream" and out.get("output_type") == "stream":
                found.append("".join(out.get("text", "")))
    return found


def voc_stop_problem(errors: List[str], mirrors: Dict[str, List[str]]) -> str:
    """Why ``errors`` (a notebook's error outputs) are not the one-line VOC message, or ``""`` when they are;
    ``mirrors``: per VOC set (``2007-test``...), the URLs the message must name."""
    if len(errors) != 1:
        return f"{len(errors)} error outputs: {'; '.join(e[:150] for e in errors)}"
    text = errors[0]
    voc_set = next((v for v in mirrors if text.startswith(f"HRankError: could not download VOC {v}:")), None)
    if voc_set is None or "\n" in text.strip():
        return f"not the one-line VOC message: {text[:300]}"
    missing = [m for m in mirrors[voc_set] if m not in text]
    if missing or VOC_SOURCE_ENV not in text or "put the tar at" not in text:
        return f"the message lacks {', '.join(missing) or VOC_SOURCE_ENV + ' or where to put the tar'}: {text[:300]}"
    return ""


def scenario_checks(run_dir: Path, world: World, plan: ScenarioPlan, notebooks: List[dict], got: Dict[str, dict],
                    requests: List[str]) -> List[dict]:
    """The checks of one scenario run into ``run_dir``: ``notebooks`` (name, status, error outputs), ``got`` (the
    downloads records, by artifact) and the ``requests`` the stand-in saw."""
    checks = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": what, "ok": bool(ok), "detail": detail})

    _notebook_checks(check, run_dir, world, plan, notebooks)
    results = run_dir / "results"
    substitutes = read_result(results, "substitutes.json") or {}
    ran = {nb["notebook"] for nb in notebooks if nb["status"] == "ok"}
    last = "06_video_demo" in ran  # the clip and the report are notebook 06's
    for name, source in plan.sources.items():
        if name == "street-clip":
            if last:
                video = read_result(results, "video.json") or {}
                check("video clip source", video.get("source") == source, f"{video.get('source')} (expected {source})")
        elif source == "unavailable":
            key, meet = SUBSTITUTED[name]
            why = substitutes.get(key, "")
            if ran & meet:
                check(f"{name} unavailable and reported", name not in got and plan.says.get(key, "") in why and why,
                      why[:300] or "no substitute recorded")
            if last and why:
                check(f"the report names the stand-in for {name}", why in (run_dir / "report.md").read_text())
        elif source == "library names":
            said = [sum(t.count(LIBRARY_NAMES) for t in _outputs(run_dir / "notebooks" / f"{nb}.ipynb", "stream"))
                    for nb in sorted(ran)]
            check("the library's class names stand in, said once per notebook", name not in got and said and
                  max(said) == 1, f"said {said} times in {sorted(ran)}")
        elif source != "stops" and name in got:
            check(f"{name} from {source}", got[name]["source"].startswith(source), got[name]["source"])
    seen = [r for r in requests if "/download?" in r or "/uc?" in r]
    taken = [i for i in plan.never if any(f"id={i}&" in r or r.endswith(f"id={i}") for r in seen)]
    check("only the named files of a Drive folder downloaded", not taken, ", ".join(taken))
    kept_bad = _kept_bad(run_dir, world)
    check("no damaged download kept", not kept_bad, ", ".join(kept_bad))
    for name in ("report.md", "report.html") if last else ():
        check(f"{name} written by the notebooks", (run_dir / name).is_file(), str(run_dir / name))
    return checks


def _notebook_checks(check, run_dir: Path, world: World, plan: ScenarioPlan, notebooks: List[dict]) -> None:
    """Each notebook ran with no error output; where VOC is down, stopped with the one-line message instead."""
    stops = [n for n, s in plan.sources.items() if s == "stops"]  # voc-<set> names
    mirrors = {n[len("voc-"):]: [s["url"] for s in _artifact(world, n)["sources"]] for n in stops}
    for nb in notebooks:
        name = nb["notebook"]
        if stops and nb["status"] != "ok":
            problem = voc_stop_problem(_outputs(run_dir / "notebooks" / f"{name}.ipynb", "error"), mirrors)
            check(f"{name} stops with the one-line VOC message", not problem, problem)
            continue
        check(f"{name} ran", nb["status"] == "ok", nb.get("error", ""))
        check(f"{name} shows no error output", not nb["error_outputs"], "; ".join(nb["error_outputs"]))
    setup = [nb for nb in notebooks if nb["notebook"] == "00_setup"]
    if stops and setup:
        ran = setup[0]["status"] == "ok"
        check("00_setup meets the VOC failure", not ran, "it ran although every VOC mirror fails" if ran else "")


def _artifact(world: World, name: str) -> dict:
    return next(a for a in json.loads(world.manifest.read_text())["artifacts"] if a["name"] == name)


def _kept_bad(run_dir: Path, world: World) -> List[str]:
    """Installed files whose bytes are one of the scenario's damaged copies."""
    served_good = {sha256sum(p) for n, p in world.files.items() if p.is_file() and n != "hrank-ssd-bundle"}
    bad_dir = world.folder / "served-bad"
    bad = {sha256sum(p) for p in bad_dir.iterdir()} if bad_dir.is_dir() else set()
    installed = [p for p in (run_dir / "work").rglob("*") if p.is_file() and p.suffix in (".pth", ".txt", ".mp4")]
    return [str(p) for p in installed if p.stat().st_size > 0 and sha256sum(p) in bad - served_good]


__all__ = ["scenario_checks", "voc_stop_problem"]
