"""What the full profile downloads, made locally with the real files' shapes, and served by the stand-in.

``build_world(folder)`` writes, once:
- ``gcs/``: pytorch-ssd's VGG16-SSD and MobileNetV1-SSD checkpoints (21 classes, its key layout) and its labels;
- ``drive/hrank-ssd-models.zip``: the original project's bundle (pruned VGG16-SSD at ``[0.1]*7+[0.5]*9``, pruned
  with the ranks below, plus copies of both baselines and the labels);
- ``drive/vgg-16-limitbatch5/``: the 14 ``rank_conv{i}.npy`` files, real ranks of the stand-in VGG16-SSD;
- ``drive/pytorch-ssd-models/``: pytorch-ssd's Drive folder, where its README sends users since 2023-03-11: both
  baselines and the labels (links to the ``gcs/`` files) beside other models of it the course never takes;
- ``voc/``: the three VOC tars with the real layout (``VOCdevkit/VOC2007/...``), from the real VOC samples in
  ``../shared/data`` when present, synthetic VOC-format images otherwise;
- ``github/vtest.mp4``: the street clip (``../shared``'s, else a synthetic pan);
- ``manifest.json``: the repository's manifest with the checksums of these files where it pins any
  (the clip's sha256, the tars' md5s); URLs and Drive ids unchanged, so the real code paths are used.

The weights are random (seeded): the rehearsal proves the path, not the accuracy.
:func:`rehearsal.scenarios.serve` answers each URL and Drive id as a scenario says.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from hrank_ssd.course.video import make_synthetic_video
from hrank_ssd.data.synthetic import SHAPES, make_synthetic_voc
from hrank_ssd.data.voc import VOC_CLASSES, TestTransform, VOCDataset
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.hrank.ranks import compute_ranks, image_batches, save_ranks
from hrank_ssd.io.archives import extract_archive
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.io.manifest import DEFAULT_MANIFEST
from hrank_ssd.io.verify import md5sum, sha256sum
from hrank_ssd.io.voc_download import VOC_SETS
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model, clean_state_dict

WORLD_VERSION = 2  # a world.json of another version is built again (what the world holds changed)
BUNDLE_DIR = "hrank-ssd-models"  # the folder inside the bundle zip
PRUNED_MEMBER = "vgg16-ssd-prune-Epoch-119-Loss-2.93.pth"  # the lowest-loss pattern the manifest picks
SHARED_DATA = ("..", "shared", "data")  # relative to the repository root
PYTORCH_SSD_OTHERS = ("mb2-ssd-lite-mp-0_686.pth", "mb2-imagenet-71_8.pth", "mobilenet_v1_with_relu_69_5.pth",
                      "vgg16_reducedfc.pth")  # in pytorch-ssd's Drive folder, never taken by the course


@dataclass
class World:
    folder: Path
    manifest: Path
    files: Dict[str, Path]  # artifact name -> the file (or folder) served for it
    voc_source: str  # where the VOC images came from


def _artifacts(manifest_data: dict) -> Dict[str, dict]:
    return {a["name"]: a for a in manifest_data["artifacts"]}


def _save_plain(model, path: Path) -> Path:
    """A bare state dict, as pytorch-ssd's ``net.save`` writes it (no sidecar, no metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clean_state_dict(model), path)
    return path


def _voc_sources(repo: Path, folder: Path, train: int, test: int, seed: int):
    """Two VOC folders (Annotations, JPEGImages, ImageSets/Main) to draw the tars from, and where they came from."""
    shared = repo.joinpath(*SHARED_DATA)
    v07, v12 = shared / "voc2007_sample" / "VOC2007", shared / "voc2012_sample" / "VOC2012"
    if (v07 / "Annotations").is_dir() and (v12 / "Annotations").is_dir():
        return v07, v12, "real VOC samples (../shared/data: VOC2007 and VOC2012 images with their XML)"
    root = make_synthetic_voc(folder / "synthetic", train, test, image_size=300, seed=seed)
    for xml in (root / "Annotations").glob("*.xml"):  # the shapes take VOC class names (the published labels)
        text = xml.read_text()
        for shape, voc_name in zip(SHAPES, _voc_names()):
            text = text.replace(f"<name>{shape}</name>", f"<name>{voc_name}</name>")
        xml.write_text(text)
    return root, root, "synthetic VOC-format images named as VOC classes (../shared/data absent)"


def _voc_names() -> List[str]:
    return list(VOC_CLASSES)


def _ids(voc: Path, split: str) -> List[str]:
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def _write_tar(out: Path, top: str, voc: Path, ids: List[str], split: str) -> Path:
    """A tar with the real layout: ``VOCdevkit/<top>/{Annotations,JPEGImages,ImageSets/Main/<split>.txt}``."""
    if not ids:
        raise HRankError(f"no images for the {top} {split} tar in {voc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{i}\n" for i in ids))
    with tarfile.open(out, "w") as t:
        t.add(listing, f"VOCdevkit/{top}/ImageSets/Main/{split}.txt")
        for i in ids:
            t.add(voc / "Annotations" / f"{i}.xml", f"VOCdevkit/{top}/Annotations/{i}.xml")
            t.add(voc / "JPEGImages" / f"{i}.jpg", f"VOCdevkit/{top}/JPEGImages/{i}.jpg")
    listing.unlink()
    return out


def _voc_tars(folder: Path, repo: Path, train: int, test: int, seed: int) -> Tuple[Dict[str, Path], str]:
    """The three tars. Real samples: 2007 trainval = the first ``train`` VOC2012-sample images, 2007 test = the
    five VOC2007 images then the next VOC2012-sample ones (``test`` in all), 2012 trainval = the whole sample."""
    v07, v12, source = _voc_sources(repo, folder, train, test, seed)
    pool = _ids(v12, "trainval")
    if v07 == v12:  # synthetic: its own splits
        train_ids, test_ids = pool[:train], _ids(v07, "test")[:test]
    else:
        train_ids = pool[:train]
        test_ids = (_ids(v07, "test") + pool[train:])[:test]
    stage = folder / "voc" / "test-stage"  # the test tar may mix both samples: gather them in one folder
    for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
        (stage / sub).mkdir(parents=True, exist_ok=True)
        for i in test_ids:
            src = v07 if (v07 / sub / f"{i}.{ext}").is_file() else v12
            shutil.copyfile(src / sub / f"{i}.{ext}", stage / sub / f"{i}.{ext}")
    tar = {name: folder / "voc" / VOC_SETS[name][1] for name in VOC_SETS}
    tars = {"voc-2007-trainval": _write_tar(tar["2007-trainval"], "VOC2007", v12, train_ids, "trainval"),
            "voc-2007-test": _write_tar(tar["2007-test"], "VOC2007", stage, test_ids, "test"),
            "voc-2012-trainval": _write_tar(tar["2012-trainval"], "VOC2012", v12, pool, "trainval")}
    shutil.rmtree(stage)
    return tars, source


def _ranks_and_models(folder: Path, train_root: Path, seed: int) -> Dict[str, Path]:
    torch.manual_seed(seed)
    vgg, mb1 = build_model("vgg16-ssd", 21).eval(), build_model("mb1-ssd", 21).eval()
    files = {"vgg16-ssd": _save_plain(vgg, folder / "gcs" / "vgg16-ssd-mp-0_7726.pth"),
             "mb1-ssd": _save_plain(mb1, folder / "gcs" / "mobilenet-v1-ssd-mp-0_675.pth")}
    labels = folder / "gcs" / "voc-model-labels.txt"
    labels.write_text("\n".join(["BACKGROUND", *_voc_names()]) + "\n")
    files["voc-labels"] = labels
    ds = VOCDataset(train_root, split="trainval", transform=TestTransform(vgg.image_size, vgg.cfg.image_mean,
                                                                         vgg.cfg.image_std))
    rank_dir = folder / "drive" / "vgg-16-limitbatch5"
    save_ranks(compute_ranks(vgg, image_batches(ds, 2, 1), progress=False), rank_dir)
    files["vgg16-ssd-ranks"] = rank_dir
    pruned, _ = prune_model(vgg, PRUNED_RATE, "hrank", rank_dir)
    members = [_save_plain(pruned, folder / "drive" / "staging" / PRUNED_MEMBER)]  # served in the bundle only
    members += [files[name] for name in ("vgg16-ssd", "mb1-ssd", "voc-labels")]
    bundle = folder / "drive" / "hrank-ssd-models.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as z:  # checkpoints barely compress
        for member in members:
            z.write(member, f"{BUNDLE_DIR}/{member.name}")
    shutil.rmtree(folder / "drive" / "staging")
    files["hrank-ssd-bundle"] = bundle
    files["pytorch-ssd-folder"] = _pytorch_ssd_folder(folder / "drive" / "pytorch-ssd-models", files)
    return files


def _pytorch_ssd_folder(out: Path, files: Dict[str, Path]) -> Path:
    """pytorch-ssd's Drive folder: links to the baselines and labels, and small stand-ins of its other models."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vgg16-ssd", "mb1-ssd", "voc-labels"):
        try:
            os.link(files[name], out / files[name].name)
        except OSError:
            shutil.copyfile(files[name], out / files[name].name)
    for name in PYTORCH_SSD_OTHERS:
        (out / name).write_bytes(b"\x80" + name.encode() * 64)
    return out


def _street_clip(folder: Path, repo: Path, test_tar_root: Optional[Path]) -> Path:
    out = folder / "github" / "vtest.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    shared = repo.joinpath(*SHARED_DATA, "video", "vtest.mp4")
    if shared.is_file():
        shutil.copyfile(shared, out)
        return out
    return make_synthetic_video(out, test_tar_root, seconds=2, fps=10)


def build_world(folder, repo: Path, train_images: int = 16, test_images: int = 8, seed: int = 0) -> World:
    """Write every stand-in file under ``folder`` (reused when ``folder/world.json`` says it is complete)."""
    folder = Path(folder)
    done = folder / "world.json"
    info = json.loads(done.read_text()) if done.is_file() else {}
    if info.get("version") == WORLD_VERSION:
        return World(folder, folder / "manifest.json", {k: Path(v) for k, v in info["files"].items()},
                     info["voc_source"])
    if folder.is_dir():
        shutil.rmtree(folder)  # an unfinished world, or one of another version
    folder.mkdir(parents=True, exist_ok=True)
    tars, voc_source = _voc_tars(folder, repo, train_images, test_images, seed)
    extract = folder / "voc" / "trainval-extracted"
    extract_archive(tars["voc-2007-trainval"], extract)
    files = {**tars, **_ranks_and_models(folder, extract / "VOCdevkit" / "VOC2007", seed)}
    files["street-clip"] = _street_clip(folder, repo, extract / "VOCdevkit" / "VOC2007")
    shutil.rmtree(extract)
    data = copy.deepcopy(json.loads(DEFAULT_MANIFEST.read_text()))
    arts = _artifacts(data)
    for name, path in files.items():
        if arts.get(name, {}).get("md5"):
            arts[name]["md5"] = md5sum(path)
        if arts.get(name, {}).get("sha256"):  # only what the real manifest pins is pinned here
            arts[name]["size"], arts[name]["sha256"] = path.stat().st_size, sha256sum(path)
    data["about"] = f"Rehearsal stand-in of {DEFAULT_MANIFEST.name}: same URLs and ids, this world's checksums."
    manifest = folder / "manifest.json"
    atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")
    atomic_write_text(done, json.dumps({"version": WORLD_VERSION, "files": {k: str(v) for k, v in files.items()},
                                        "voc_source": voc_source}, indent=1))
    return World(folder, manifest, files, voc_source)
