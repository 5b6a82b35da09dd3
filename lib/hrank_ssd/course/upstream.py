"""What a notebook recomputes when the earlier notebooks' work is not in the work folder (:func:`recompute_note`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Tuple

from hrank_ssd.course.models import MB1_PRUNED, PAPER_MACS, SMALL
from hrank_ssd.course.results import NOTEBOOKS
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.ranks import has_ranks


def _published(course, name: str) -> bool:
    """Whether the manifest's artifact ``name`` is already downloaded into the work folder."""
    try:
        return course.downloaded(name)
    except (HRankError, KeyError):  # a damaged manifest: the note says it is missing
        return False


def _voc(course, split: str) -> bool:
    folder = "VOC2007" if split == "trainval" or course.profile.synthetic else "VOC2007-test"
    return (Path(course.data) / "VOCdevkit" / folder / "ImageSets" / "Main" / f"{split}.txt").is_file()


def _made(course, *keys: str) -> bool:
    return all(Path(course.path(key)).is_file() for key in keys)


def _own_or_published(own: Callable, *published: str) -> Callable:
    """A check: ``own(course)`` on a synthetic profile, else the ``published`` artifacts downloaded."""
    return lambda c: own(c) if c.profile.synthetic else all(_published(c, name) for name in published)


# what a notebook uses, by key: is it there?
CHECKS: Dict[str, Callable] = {
    "voc-trainval": lambda c: _voc(c, "trainval"), "voc-test": lambda c: _voc(c, "test"),
    "baselines": _own_or_published(lambda c: _made(c, "vgg16-ssd", "mb1-ssd"), "vgg16-ssd", "mb1-ssd"),
    "ranks": _own_or_published(lambda c: has_ranks(Path(c.work) / "ranks", "vgg16-ssd"), "vgg16-ssd-ranks"),
    "ranks-mb1-ssd": lambda c: has_ranks(Path(c.work) / "ranks-mb1-ssd", "mb1-ssd"),
    "choice": lambda c: (Path(c.work) / "choice.json").is_file(),
    "latency-models": lambda c: _made(c, f"{PAPER_MACS}-init", f"{SMALL}-init"),
    "latency-table": lambda c: any((Path(c.work) / "latency").glob("*.json")),
    "evaluation": lambda c: c.result("map.csv").is_file(),
    "vgg16-ssd-pruned": lambda c: _published(c, "vgg16-ssd-hrank") if c.profile.published
    else _made(c, "vgg16-ssd-pruned"),
    **{key: (lambda c, key=key: _made(c, key)) for key in (PAPER_MACS, SMALL, MB1_PRUNED)},
}

Need = Tuple[str, str, str, str]  # what it is, its CHECKS key, what happens without it on full, and on synthetic
_DATA = [(f"VOC2007 {split}", f"voc-{split}", "downloaded into this machine's data folder",
          "drawn here (synthetic shapes)") for split in ("trainval", "test")]
_BASE = ("00's baselines", "baselines", "downloaded (the published weights)", "trained here")
_RANKS = ("VGG16-SSD's ranks", "ranks", "downloaded (the published rank files)", "computed here (01's)")
_FINETUNED = ("the finetuned pruned VGG16-SSD", "vgg16-ssd-pruned", "downloaded (the published one)",
              "finetuned here (03's)")
_HERE = ("finetuned here",) * 2
_LATER = [("03's finetuned latency-pruned VGG16-SSD at the paper rate's MACs", PAPER_MACS, *_HERE),
          ("03's finetuned latency-pruned VGG16-SSD, small budget", SMALL, *_HERE),
          ("03's finetuned pruned MobileNetV1-SSD", MB1_PRUNED, *_HERE)]
NEEDS: Dict[str, List[Need]] = {
    "00_setup": [],
    "01_rank_generation": [*_DATA, _BASE],
    "02_hrank_pruning": [*_DATA, _BASE, _RANKS],
    "03_finetune": [*_DATA, _BASE, _RANKS,
                    ("02's choice of compress rate", "choice", *["finetunes the profile's rate instead"] * 2),
                    ("the latency-pruned models (notebook 07's lesson)", "latency-models",
                     *["measures this machine's latency table and chooses their widths here"] * 2),
                    ("01's MobileNetV1-SSD ranks", "ranks-mb1-ssd", *["computed here"] * 2)],
    "04_eval_map_fps": [_DATA[1], _BASE, _FINETUNED, *_LATER],
    "05_flops_table": [],
    "06_video_demo": [_FINETUNED],
    "07_latency_pruning": [*_DATA, _BASE, _RANKS],
    "08_speed_frontier": [_DATA[1], _BASE, _FINETUNED, ("the latency table", "latency-table", *["measured here"] * 2),
                          *_LATER, ("04's evaluation", "evaluation", *["evaluated here"] * 2)],
}


def recompute_note(course, notebook: str) -> str:
    """A few lines for the top of ``notebook``: what it uses from earlier notebooks, and what happens without it."""
    if notebook not in NEEDS:
        raise HRankError(f"unknown notebook {notebook!r}: choose one of {', '.join(NOTEBOOKS)}")
    lines = [f"- missing {what}: {synthetic if course.profile.synthetic else full}"
             for what, key, full, synthetic in NEEDS[notebook] if not CHECKS[key](course)]
    if not NEEDS[notebook]:
        lines = ["- it uses nothing from the earlier notebooks."]
    elif not lines:
        lines = ["- everything it uses from the earlier notebooks is there: nothing is recomputed."]
    head = f"What {notebook} takes from earlier notebooks (profile {course.profile.name}, work folder {course.work}):"
    return "\n".join([head, *lines])
