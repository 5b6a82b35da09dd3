"""What a notebook recomputes when the earlier notebooks' work is not in the work folder (:func:`recompute_note`)."""

from __future__ import annotations

from pathlib import Path

from hrank_ssd.course.models import MB1_PRUNED, PAPER_MACS, SMALL
from hrank_ssd.course.results import NOTEBOOKS
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.ranks import has_ranks


def _published(course, *names: str) -> bool:
    """Whether the manifest's artifacts ``names`` are downloaded into the work folder already."""
    try:
        return all(course.downloaded(name) for name in names)
    except (HRankError, KeyError):  # a damaged manifest: the note says it is missing
        return False


def _voc(course, split: str) -> bool:
    folder = "VOC2007" if split == "trainval" or course.profile.synthetic else "VOC2007-test"
    return (Path(course.data) / "VOCdevkit" / folder / "ImageSets" / "Main" / f"{split}.txt").is_file()


def _made(course, *keys: str) -> bool:
    return all(Path(course.path(key)).is_file() for key in keys)


_DOWN, _DRAWN, _HERE = "downloaded into this machine's data folder", "drawn here (synthetic shapes)", "finetuned here"
# what a notebook may take from earlier ones: key -> (what it is, is it there?, without it on full, on synthetic)
ITEMS = {
    "voc-trainval": ("VOC2007 trainval", lambda c: _voc(c, "trainval"), _DOWN, _DRAWN),
    "voc-test": ("VOC2007 test", lambda c: _voc(c, "test"), _DOWN, _DRAWN),
    "baselines": ("00's baselines", lambda c: _made(c, "vgg16-ssd", "mb1-ssd") if c.profile.synthetic
                  else _published(c, "vgg16-ssd", "mb1-ssd"), "downloaded (the published weights)", "trained here"),
    "ranks": ("VGG16-SSD's ranks", lambda c: has_ranks(Path(c.work) / "ranks", "vgg16-ssd") if c.profile.synthetic
              else _published(c, "vgg16-ssd-ranks"), "downloaded (the published rank files)", "computed here (01's)"),
    "choice": ("02's choice of compress rate", lambda c: (Path(c.work) / "choice.json").is_file(),
               *["finetunes the profile's rate instead"] * 2),
    "latency-models": ("the latency-pruned models (notebook 07's lesson)",
                       lambda c: _made(c, f"{PAPER_MACS}-init", f"{SMALL}-init"),
                       *["measures this machine's latency table and chooses their widths here"] * 2),
    "ranks-mb1-ssd": ("01's MobileNetV1-SSD ranks", lambda c: has_ranks(Path(c.work) / "ranks-mb1-ssd", "mb1-ssd"),
                      *["computed here"] * 2),
    "finetuned": ("the finetuned pruned VGG16-SSD", lambda c: _published(c, "vgg16-ssd-hrank") if c.profile.published
                  else _made(c, "vgg16-ssd-pruned"), "downloaded (the published one)", "finetuned here (03's)"),
    "latency-table": ("the latency table", lambda c: any((Path(c.work) / "latency").glob("*.json")),
                      *["measured here"] * 2),
    PAPER_MACS: ("03's finetuned latency-pruned VGG16-SSD at the paper rate's MACs", lambda c: _made(c, PAPER_MACS),
                 _HERE, _HERE),
    SMALL: ("03's finetuned latency-pruned VGG16-SSD, small budget", lambda c: _made(c, SMALL), _HERE, _HERE),
    MB1_PRUNED: ("03's finetuned pruned MobileNetV1-SSD", lambda c: _made(c, MB1_PRUNED), _HERE, _HERE),
    "evaluation": ("04's evaluation", lambda c: c.result("map.csv").is_file(), *["evaluated here"] * 2),
}
_START, _LATER = ("voc-trainval", "voc-test", "baselines", "ranks"), (PAPER_MACS, SMALL, MB1_PRUNED)
NEEDS = {  # what each notebook takes from earlier ones (ITEMS' keys)
    "00_setup": (), "01_rank_generation": _START[:3], "02_hrank_pruning": _START,
    "03_finetune": (*_START, "choice", "latency-models", "ranks-mb1-ssd"),
    "04_eval_map_fps": ("voc-test", "baselines", "finetuned", *_LATER), "05_flops_table": (),
    "06_video_demo": ("finetuned",), "07_latency_pruning": _START,
    "08_speed_frontier": ("voc-test", "baselines", "finetuned", "latency-table", *_LATER, "evaluation"),
}


def recompute_note(course, notebook: str) -> str:
    """A few lines for the top of ``notebook``: what it uses from earlier notebooks, and what happens without it."""
    if notebook not in NEEDS:
        raise HRankError(f"unknown notebook {notebook!r}: choose one of {', '.join(NOTEBOOKS)}")
    items = [ITEMS[key] for key in NEEDS[notebook]]
    lines = [f"- missing {what}: {synthetic if course.profile.synthetic else full}"
             for what, there, full, synthetic in items if not there(course)]
    if not items:
        lines = ["- it uses nothing from the earlier notebooks."]
    elif not lines:
        lines = ["- everything it uses from the earlier notebooks is there: nothing is recomputed."]
    head = f"What {notebook} takes from earlier notebooks (profile {course.profile.name}, work folder {course.work}):"
    return "\n".join([head, *lines])
