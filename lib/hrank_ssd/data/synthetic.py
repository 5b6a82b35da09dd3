"""A VOC-format dataset of coloured shapes (the class is the shape): tiny to large, occluded, faint objects among
unlabelled look-alikes and line clutter. A seed gives byte-identical files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from hrank_ssd.data.voc import write_labels
from hrank_ssd.errors import HRankError

SHAPES = ("circle", "square", "triangle", "cross", "ring")
DISTRACTORS = ("diamond", "x", "hexagon", "star")  # drawn, never labelled: each looks like one of SHAPES
DIFFICULT_RATE = 0.15  # about this share of images get one extra tiny object marked difficult
SIDE = (0.14, 0.7)  # an object's side as a share of the image, log-uniform: many small ones
MAX_OBJECTS = 5  # labelled objects per image: 1 to this
MAX_DISTRACTORS = 2
OCCLUSION = 0.3  # the largest share of a box that later objects may cover
CLUTTER_LINES = 6  # up to this many random lines behind the shapes
_A = 0.33  # half the width of a cross's bar
_CROSS = [[-_A, -1], [_A, -1], [_A, -_A], [1, -_A], [1, _A], [_A, _A], [_A, 1], [-_A, 1], [-_A, _A], [-1, _A],
          [-1, -_A], [-_A, -_A]]
_STAR = [[(1.0 if k % 2 == 0 else 0.45) * math.sin(k * math.pi / 5), -(1.0 if k % 2 == 0 else 0.45)
          * math.cos(k * math.pi / 5)] for k in range(10)]
POLYGONS = {  # outlines in [-1, 1]^2 of the shapes drawn as polygons
    "square": [[-1, -1], [1, -1], [1, 1], [-1, 1]], "triangle": [[0, -1], [1, 1], [-1, 1]], "cross": _CROSS,
    "diamond": [[0, -1], [1, 0], [0, 1], [-1, 0]], "x": [[(x - y) / (1 + _A), (x + y) / (1 + _A)] for x, y in _CROSS],
    "hexagon": [[math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)] for k in range(6)], "star": _STAR}


def _background(rng: np.random.Generator, size: int, dark: bool) -> np.ndarray:
    lo, hi = (0, 100) if dark else (150, 255)
    kind = rng.integers(3)
    if kind == 0:  # blocky noise
        cells = int(rng.integers(4, 30))
        small = rng.uniform(lo, hi, (cells, cells, 3)).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    else:  # two colours: a linear gradient, or stripes
        a, b = rng.uniform(lo, hi, 3), rng.uniform(lo, hi, 3)
        if kind == 1:
            angle = rng.uniform(0, 2 * math.pi)
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
            t = (xx * math.cos(angle) + yy * math.sin(angle))
            t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        else:
            angle, period = rng.uniform(0, math.pi), rng.uniform(8, 40)
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            t = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    for _ in range(int(rng.integers(0, CLUTTER_LINES + 1))):  # clutter: lines of any colour
        (x1, y1), (x2, y2) = rng.integers(0, size, 2), rng.integers(0, size, 2)
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    img = img + rng.normal(0, 8, (size, size, 1)).astype(np.float32)
    return np.clip(img, 0, 255)


def _colour(rng: np.random.Generator, dark_background: bool) -> Tuple[int, int, int]:
    """A random hue, brighter on dark backgrounds and darker on light ones, sometimes faint (BGR order)."""
    hue = int(rng.integers(0, 180))
    sat = int(rng.integers(40, 256))
    val = int(rng.integers(110, 256)) if dark_background else int(rng.integers(10, 150))
    hsv = np.array([[[hue, sat, val]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _draw(img: np.ndarray, kind: str, box: Tuple[float, float, float, float], colour, rng) -> Tuple[int, ...]:
    """Draw ``kind`` filling ``box`` (x1, y1, x2, y2 floats); returns its tight integer pixel box."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    size = img.shape[0]
    if kind in ("circle", "ring"):
        center, axes = (int(round(cx)), int(round(cy))), (max(int(round(w / 2)), 1), max(int(round(h / 2)), 1))
        if kind == "circle":
            cv2.ellipse(img, center, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
        else:
            thick = max(int(round(min(axes) * rng.uniform(0.25, 0.4))), 2)
            inner = (max(axes[0] - thick // 2, 1), max(axes[1] - thick // 2, 1))
            cv2.ellipse(img, center, inner, 0, 0, 360, colour, thick, cv2.LINE_AA)
        bx = (center[0] - axes[0], center[1] - axes[1], center[0] + axes[0], center[1] + axes[1])
    else:
        turn = 0.2 if kind in ("square", "cross", "diamond", "x") else 0.35  # keeps square and diamond apart
        angle = rng.uniform(-turn, turn)
        pts = np.array(POLYGONS[kind], dtype=np.float64) * (w / 2, h / 2) + (cx, cy)
        c, s, p = math.cos(angle), math.sin(angle), pts - (cx, cy)  # turned about the centre
        ipts = np.round(np.stack([p[:, 0] * c - p[:, 1] * s, p[:, 0] * s + p[:, 1] * c], 1) + (cx, cy)).astype(np.int32)
        cv2.fillPoly(img, [ipts], colour, cv2.LINE_AA)
        bx = (ipts[:, 0].min(), ipts[:, 1].min(), ipts[:, 0].max(), ipts[:, 1].max())
    return tuple(int(np.clip(v, 0, size - 1)) for v in bx)


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _place(rng: np.random.Generator, size: int, placed, side: float):
    """A box of about ``side`` pixels that covers at most OCCLUSION of any box in ``placed`` (None after 15 tries)."""
    for _ in range(15):
        aspect = math.exp(rng.uniform(-0.3, 0.3))
        w, h = min(side * aspect, 0.95 * size), min(side / aspect, 0.95 * size)
        x1, y1 = rng.uniform(1, size - 1 - w), rng.uniform(1, size - 1 - h)
        box = (x1, y1, x1 + w, y1 + h)
        if all(_overlap(box, p) <= OCCLUSION for p in placed):
            return box
    return None


def make_scene(rng: np.random.Generator, size: int):
    """One image (HxWx3 BGR uint8) and its objects ``[(class_name, (x1, y1, x2, y2) 0-based), difficult]``: labelled
    shapes and unlabelled distractors drawn in a random order, so a later one may hide part of an earlier one."""
    dark = bool(rng.integers(2))
    img = _background(rng, size, dark).astype(np.uint8)
    kinds = [SHAPES[int(k)] for k in rng.integers(len(SHAPES), size=int(rng.integers(1, MAX_OBJECTS + 1)))]
    others = rng.integers(len(DISTRACTORS), size=int(rng.integers(0, MAX_DISTRACTORS + 1)))
    kinds += [DISTRACTORS[int(k)] for k in others]
    placed, objects = [], []
    for i in rng.permutation(len(kinds)):
        box = _place(rng, size, placed, math.exp(rng.uniform(*np.log(SIDE))) * size)
        if box is not None:
            placed.append(box)
            objects.append([kinds[i], box, 0])
    if rng.random() < DIFFICULT_RATE:  # a tiny object: hard to see, marked difficult
        for _ in range(20):
            side = rng.uniform(0.03, 0.05) * size
            x1, y1 = rng.uniform(1, size - 1 - side), rng.uniform(1, size - 1 - side)
            box = (x1, y1, x1 + side, y1 + side)
            if all(_overlap(box, p) == 0 for p in placed):
                objects.append([SHAPES[int(rng.integers(len(SHAPES)))], box, 1])
                break
    drawn = [(kind, _draw(img, kind, box, _colour(rng, dark), rng), difficult) for kind, box, difficult in objects]
    return img, [obj for obj in drawn if obj[0] in SHAPES]


def annotation_xml(image_id: str, size: int, objects) -> str:
    """VOC XML text; boxes are written 1-based (0-based pixel + 1) like the real annotations."""
    lines = ["<annotation>", "\t<folder>VOC2007</folder>", f"\t<filename>{image_id}.jpg</filename>",
             "\t<source>", "\t\t<database>hrank-ssd synthetic shapes</database>", "\t</source>",
             "\t<size>", f"\t\t<width>{size}</width>", f"\t\t<height>{size}</height>", "\t\t<depth>3</depth>",
             "\t</size>", "\t<segmented>0</segmented>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        lines += ["\t<object>", f"\t\t<name>{name}</name>", "\t\t<pose>Unspecified</pose>",
                  "\t\t<truncated>0</truncated>", f"\t\t<difficult>{difficult}</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{x1 + 1}</xmin>", f"\t\t\t<ymin>{y1 + 1}</ymin>",
                  f"\t\t\t<xmax>{x2 + 1}</xmax>", f"\t\t\t<ymax>{y2 + 1}</ymax>", "\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def make_synthetic_voc(out_dir, num_train: int = 600, num_test: int = 150, image_size: int = 300, seed: int = 0) -> Path:
    """Write and return ``out_dir/VOCdevkit/VOC2007``; a bigger ``num_train`` keeps the first images unchanged."""
    if num_train < 1 or num_test < 1:
        raise HRankError("--num_train and --num_test must be at least 1")
    if image_size < 64:
        raise HRankError(f"--image_size {image_size} is too small: use 64 or more (300 for VGG16-SSD)")
    root = Path(out_dir) / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(num_train + num_test)]
    for i, image_id in enumerate(ids):
        # the test images use their own stream family so they never repeat training images
        stream = (seed, 0 if i < num_train else 1, i if i < num_train else i - num_train)
        rng = np.random.default_rng(stream)
        img, objects = make_scene(rng, image_size)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise HRankError(f"could not encode image {image_id}: check the OpenCV install")
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(buf.tobytes())
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, image_size, objects),
                                                              encoding="utf-8")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids[:num_train]) + "\n", encoding="utf-8")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids[num_train:]) + "\n", encoding="utf-8")
    write_labels(root / "labels.txt", SHAPES)
    return root
