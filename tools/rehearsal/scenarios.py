"""The rehearsal's scenarios: how the stand-in answers each URL and Drive id, and what the course must then show.

:func:`serve` serves a :class:`~rehearsal.world.World` through a started
:class:`~rehearsal.standin.StandInWorld` as one scenario says and returns its :class:`ScenarioPlan`, which
:mod:`rehearsal.checks` checks the executed notebooks against:

- ``normal``: every source works; the bundle comes with Drive's virus-scan confirmation form; the VOC2007 test tar
  only on the second mirror (the first answers 404).
- ``quota``: Drive serves its quota page for the bundle: the published pruned model is unavailable.
- ``corrupt``: GCS serves a damaged MobileNetV1-SSD checkpoint and an HTML page for the labels, the first VOC
  mirror a damaged 2007 trainval tar, and the clip's host a damaged clip.
- ``moved``: pytorch-ssd's ``models-hao`` bucket answers 404 for everything: the baselines and the labels come from
  its Drive folder, one file each (its other models are never downloaded).
- ``voc-down``: every VOC mirror fails (Oxford's host with its firewall page, the rest 404): the notebooks stop at
  VOC with the one-line message naming the mirrors tried and how to bring your own copy.
- ``own-voc``: every VOC mirror fails, but ``$HRANK_SSD_VOC_SOURCE`` names a folder with your own 2007 tars; and the
  label file answers 404 everywhere: the library's 20 class names stand in. The course goes on.
- ``no-ranks``: the published rank folder cannot be listed: notebooks 01-04 use the student's own ranks, reported.
- ``unpruned``: the original project's zip holds no pruned model, and the manifest's glob picks an unpruned
  ``vgg16-ssd-Epoch-5-Loss-2.10.pth`` (the lowest loss): it is refused for its widths and the student's own pruned
  model stands in, reported.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from hrank_ssd.errors import HRankError
from hrank_ssd.io.voc_download import VOC_SOURCE_ENV
from rehearsal.world import BUNDLE_DIR, PRUNED_MEMBER, PYTORCH_SSD_OTHERS, World

SCENARIOS = ("normal", "quota", "corrupt", "moved", "voc-down", "own-voc", "no-ranks", "unpruned")
FIREWALL_PAGE = ("<html><head><title>Web Filter Violation</title></head><body>Your access has been blocked by "
                 "firewall policy 10263.</body></html>\n")  # what pytorch/vision #9269 shows Oxford's host answering
UNPRUNED_MEMBER = "vgg16-ssd-Epoch-5-Loss-2.10.pth"
# The notebooks each scenario runs unless told otherwise: the whole course where a missing or refused file changes
# what later notebooks and the report say, the first notebooks where only the downloads differ.
SCENARIO_NOTEBOOKS = {"moved": ("00_setup",), "voc-down": ("00_setup", "01_rank_generation"),
                      "own-voc": ("00_setup", "01_rank_generation")}


@dataclass
class ScenarioPlan:
    """What one scenario serves and what the course must then show.

    ``sources``: per artifact, the start of the source ``downloads.json`` must record (``http <url>``, ``gdrive
    folder <id>/<file>``, ``bundle``, ``own copy``), or ``unavailable`` (not downloaded; a substitute recorded),
    ``library names`` (the labels: the library's names, said once), ``stops`` (VOC: the notebooks stop with the
    one-line message), and the clip's ``video.json`` source. ``env``: more environment for the kernels. ``never``:
    Drive ids that must never be downloaded. ``says``: per substitute key, words its reason must hold.
    """

    sources: Dict[str, str]
    env: Dict[str, str] = field(default_factory=dict)
    never: List[str] = field(default_factory=list)
    says: Dict[str, str] = field(default_factory=dict)


def _artifacts(world: World) -> Dict[str, dict]:
    return {a["name"]: a for a in json.loads(world.manifest.read_text())["artifacts"]}


def _corrupted(path: Path, out: Path) -> Path:
    """A copy of ``path`` with bytes changed in the middle (same size): only a checksum or CRC can tell."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes((b ^ 0x5A) for b in data[mid:mid + 64])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(data))
    return out


def _page(out: Path, text: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def _bundle_variant(world: World, name: str, drop: Sequence[str], add: Dict[str, Path]) -> Path:
    """The original project's zip without the members named in ``drop``, with ``add`` (member name: file); made
    once per world."""
    out = world.folder / "drive" / f"{name}.zip"
    if out.is_file():
        return out
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(world.files["hrank-ssd-bundle"]) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            if Path(info.filename).name not in drop:
                with src.open(info) as f, z.open(info.filename, "w") as g:
                    shutil.copyfileobj(f, g)
        for member, path in add.items():
            z.write(path, f"{BUNDLE_DIR}/{member}")
    tmp.replace(out)
    return out


def _serve_pytorch_ssd(world: World, standin, scenario: str, arts: Dict[str, dict], plan: ScenarioPlan) -> None:
    """pytorch-ssd's files: on GCS (``models-hao``) unless the scenario moved them, and in its Drive folder."""
    bad = world.folder / "served-bad"
    folder_src = arts["vgg16-ssd"]["sources"][1]
    names = [world.files[n].name for n in ("vgg16-ssd", "mb1-ssd")] + ([] if scenario == "own-voc" else
                                                                        [world.files["voc-labels"].name])
    ids = standin.serve_drive_folder(folder_src["id"], world.files["pytorch-ssd-folder"], names=names + list(
        PYTORCH_SSD_OTHERS))
    plan.never += [ids[n] for n in PYTORCH_SSD_OTHERS]
    for name in ("vgg16-ssd", "mb1-ssd", "voc-labels"):
        url, served = arts[name]["sources"][0]["url"], world.files[name]
        plan.sources[name] = f"http {url}"
        in_folder = f"gdrive folder {folder_src['id']}/{served.name}"
        if scenario == "moved":
            plan.sources[name] = in_folder
            continue  # the bucket answers 404
        if scenario == "corrupt" and name == "mb1-ssd":
            served, plan.sources[name] = _corrupted(served, bad / served.name), in_folder
        if scenario == "corrupt" and name == "voc-labels":
            served = _page(bad / "labels.html", "<!DOCTYPE html><html><body>Service unavailable</body></html>\n")
            plan.sources[name] = in_folder
        if scenario == "own-voc" and name == "voc-labels":
            plan.sources[name] = "library names"
            continue  # 404 on GCS, not in the Drive folder, not in the bundle
        standin.serve_url(url, served)


def _serve_drive(world: World, standin, scenario: str, arts: Dict[str, dict], plan: ScenarioPlan) -> None:
    """The original project's zip (as the scenario has it) and its rank folder."""
    bundle, mode = world.files["hrank-ssd-bundle"], "confirm"
    plan.sources["vgg16-ssd-hrank"] = "bundle"
    if scenario == "quota":
        mode, plan.sources["vgg16-ssd-hrank"], plan.says["vgg16-ssd-pruned"] = "quota", "unavailable", "quota"
    if scenario == "unpruned":  # no pruned member: the glob's lowest loss is an unpruned checkpoint
        bundle = _bundle_variant(world, "hrank-ssd-models-unpruned", [PRUNED_MEMBER],
                                 {UNPRUNED_MEMBER: world.files["vgg16-ssd"]})
        plan.sources["vgg16-ssd-hrank"] = "unavailable"
        plan.says["vgg16-ssd-pruned"] = "an unpruned vgg16-ssd checkpoint, not the one the manifest names"
    if scenario == "own-voc":
        bundle = _bundle_variant(world, "hrank-ssd-models-nolabels", [world.files["voc-labels"].name], {})
    standin.serve_drive(arts["hrank-ssd-bundle"]["sources"][0]["id"], bundle, mode=mode)
    ranks = arts["vgg16-ssd-ranks"]["sources"][0]["id"]
    if scenario == "no-ranks":  # the folder is not listed: Drive answers 404
        plan.sources["vgg16-ssd-ranks"] = "unavailable"
        plan.says["vgg16-ssd-ranks"] = "published rank files unavailable"
    else:
        standin.serve_drive_folder(ranks, world.files["vgg16-ssd-ranks"])
        plan.sources["vgg16-ssd-ranks"] = f"gdrive folder {ranks}"


def _serve_voc(world: World, standin, scenario: str, arts: Dict[str, dict], plan: ScenarioPlan) -> None:
    """The VOC tars on their mirrors, as the scenario has them."""
    sets = ("voc-2007-trainval", "voc-2007-test", "voc-2012-trainval")
    plan.env[VOC_SOURCE_ENV] = ""  # the rehearsing user's own setting never reaches the kernels
    if scenario in ("voc-down", "own-voc"):
        for name in sets:  # Oxford's current host answers its firewall page; every other mirror 404
            for src in arts[name]["sources"]:
                if "thor.robots.ox.ac.uk" in src["url"]:
                    standin.serve_url(src["url"], _page(world.folder / "served-bad" / "firewall.html", FIREWALL_PAGE))
        if scenario == "own-voc":
            own = world.folder / "my-drive" / "VOC"
            own.mkdir(parents=True, exist_ok=True)
            for name in sets[:2]:
                if not (own / world.files[name].name).exists():
                    shutil.copyfile(world.files[name], own / world.files[name].name)
            plan.env[VOC_SOURCE_ENV] = str(own)
        plan.sources.update({n: "own copy" if scenario == "own-voc" else "stops" for n in sets[:2]})
        return
    first, second = (s["url"] for s in arts["voc-2007-trainval"]["sources"][:2])
    tar = world.files["voc-2007-trainval"]
    if scenario == "corrupt":
        standin.serve_url(first, _corrupted(tar, world.folder / "served-bad" / tar.name))
        standin.serve_url(second, tar)
    else:
        standin.serve_url(first, tar)
    plan.sources["voc-2007-trainval"] = f"http {second if scenario == 'corrupt' else first}"
    test_second = arts["voc-2007-test"]["sources"][1]["url"]
    standin.serve_url(test_second, world.files["voc-2007-test"])  # the first mirror answers 404
    plan.sources["voc-2007-test"] = f"http {test_second}"
    standin.serve_url(arts["voc-2012-trainval"]["sources"][0]["url"], world.files["voc-2012-trainval"])


def serve(world: World, standin, scenario: str) -> ScenarioPlan:
    """Serve ``world`` through ``standin`` as ``scenario`` says (see the module's list); return its plan."""
    if scenario not in SCENARIOS:
        raise HRankError(f"unknown scenario {scenario!r}: choose among {', '.join(SCENARIOS)}")
    arts, plan = _artifacts(world), ScenarioPlan({})
    _serve_pytorch_ssd(world, standin, scenario, arts, plan)
    _serve_drive(world, standin, scenario, arts, plan)
    _serve_voc(world, standin, scenario, arts, plan)
    clip_url, clip = arts["street-clip"]["sources"][0]["url"], world.files["street-clip"]
    damaged = scenario == "corrupt"
    standin.serve_url(clip_url, _corrupted(clip, world.folder / "served-bad" / clip.name) if damaged else clip)
    plan.sources["street-clip"] = "synthetic clip" if damaged else "real clip (manifest: street-clip)"
    return plan


__all__ = ["SCENARIOS", "ScenarioPlan", "serve"]
