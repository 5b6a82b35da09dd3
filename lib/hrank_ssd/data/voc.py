"""VOC-format datasets, label files and the SSD train/test transforms.

Box conventions: VOC XML stores 1-based pixel corners; :class:`VOCDataset` returns them as
0-based pixels (XML value minus 1, as pytorch-ssd does), and the transforms turn them into
corners relative to the image, in ``[0, 1]``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset
from torch.utils.data._utils.collate import default_collate

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
LABEL_FILES = ("labels.txt", "voc-model-labels.txt")

PathLike = Union[str, os.PathLike]


def to_input(image: np.ndarray, image_size: int, mean: Sequence[float], std: float) -> torch.Tensor:
    """HxWx3 RGB uint8 image -> normalised CHW float tensor, as pytorch-ssd's PredictionTransform."""
    x = cv2.resize(image, (image_size, image_size)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.float32(std)
    return torch.from_numpy(x).permute(2, 0, 1)


# ----------------------------------------------------------------------------------------------------------
# label files


def read_labels(path: PathLike) -> List[str]:
    """Class names, ``BACKGROUND`` first (prepended when the file lacks it).

    Reads both layouts pytorch-ssd uses: one name per line (``voc-model-labels.txt``) and a dataset
    root's ``labels.txt`` with comma-separated names on one line (``VOCDataset``, which also drops spaces).
    """
    path = Path(path)
    if not path.is_file():
        raise HRankError(f"label file {path} not found: pass a text file with one class name per line")
    text = path.read_text(encoding="utf-8")
    if "," in text:
        names = [n.replace(" ", "") for n in "".join(text.splitlines()).split(",") if n.strip()]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise HRankError(f"label file {path} is empty: write one class name per line (BACKGROUND first)")
    if names[0] != "BACKGROUND":
        names.insert(0, "BACKGROUND")
    return names


def write_labels(path: PathLike, names: Sequence[str]) -> None:
    """Write one name per line, ``BACKGROUND`` first (added when ``names`` lacks it)."""
    names = list(names)
    if not names or names[0] != "BACKGROUND":
        names.insert(0, "BACKGROUND")
    atomic_write_text(path, "\n".join(names) + "\n")


def find_label_file(root: PathLike) -> Optional[Path]:
    for name in LABEL_FILES:
        p = Path(root) / name
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------------------------------------
# dataset


class VOCDataset(Dataset):
    """A ``VOCdevkit/VOC20xx``-style folder: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

    ``dataset[i]`` is ``(image, boxes, labels)`` with difficult objects dropped (unless
    ``keep_difficult``), after ``transform(image, boxes, labels)`` and ``target_transform(boxes,
    labels)`` when given (then it is ``(image, locations, labels)``).
    """

    def __init__(self, root: PathLike, split: Optional[str] = None, transform=None, target_transform=None,
                 keep_difficult: bool = False, class_names: Optional[Sequence[str]] = None, is_test: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise HRankError(f"dataset folder {self.root} not found: pass a VOCdevkit/VOC2007-style folder "
                             "(with Annotations/, JPEGImages/, ImageSets/Main/)")
        self.split = split or ("test" if is_test else "trainval")
        self.transform, self.target_transform = transform, target_transform
        self.keep_difficult = keep_difficult
        split_dir = self.root / "ImageSets" / "Main"
        split_file = split_dir / f"{self.split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in split_dir.glob("*.txt") if "_" not in p.stem) if split_dir.is_dir() else []
            hint = f"splits found: {', '.join(found)}" if found else f"no split files in {split_dir}"
            raise HRankError(f"split file {split_file} not found ({hint}): pick one of those or add the file")
        self.ids = [line.strip() for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not self.ids:
            raise HRankError(f"split file {split_file} lists no images: add image ids (one per line)")
        if class_names is None:
            label_file = find_label_file(self.root)
            class_names = read_labels(label_file) if label_file else ("BACKGROUND",) + VOC_CLASSES
        self.class_names = tuple(class_names)
        self.class_dict = {name: i for i, name in enumerate(self.class_names)}
        self._annotations: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, folder: str, image_id: str, ext: str) -> Path:
        p = self.root / folder / f"{image_id}{ext}"
        if not p.is_file():
            raise HRankError(f"{p} not found (listed in ImageSets/Main/{self.split}.txt): "
                             "restore the file or remove the id from the split")
        return p

    def get_image(self, index: int) -> np.ndarray:
        """HxWx3 RGB uint8."""
        image_id = self.ids[index]
        path = self._path("JPEGImages", image_id, ".jpg")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise HRankError(f"cannot read image {path}: the file is corrupt, re-download or remove it")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def get_annotation(self, index: int) -> Tuple[str, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(image_id, (boxes, labels, is_difficult))`` with every object of a known class.

        Each XML file is parsed once per dataset (every evaluation and epoch reads them all again);
        callers get copies, so transforms may change them in place.
        """
        image_id = self.ids[index]
        if image_id not in self._annotations:
            self._annotations[image_id] = self._parse_annotation(image_id)
        return image_id, tuple(a.copy() for a in self._annotations[image_id])

    def _parse_annotation(self, image_id: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        path = self._path("Annotations", image_id, ".xml")
        try:
            tree = ET.parse(path)
        except ET.ParseError as e:
            raise HRankError(f"cannot parse annotation {path} ({e}): re-download or fix the file") from None
        boxes, labels, difficult = [], [], []
        for obj in tree.findall("object"):
            name = (obj.findtext("name") or "").strip()
            label = self.class_dict.get(name, self.class_dict.get(name.lower()))
            if label is None:
                continue
            bb = obj.find("bndbox")
            if bb is None:
                continue
            boxes.append([float(bb.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append(label)
            d = (obj.findtext("difficult") or "0").strip()
            difficult.append(1 if d and int(float(d)) else 0)
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                np.asarray(difficult, dtype=np.uint8))

    def __getitem__(self, index: int):
        return self.item_with_image(index, self.get_image(index))

    def item_with_image(self, index: int, image: np.ndarray):
        """``self[index]`` from its image already read (:meth:`get_image`), for a caller that needs both."""
        _, (boxes, labels, difficult) = self.get_annotation(index)
        if not self.keep_difficult:
            keep = difficult == 0
            boxes, labels = boxes[keep], labels[keep]
        if self.transform is not None:
            image, boxes, labels = self.transform(image, boxes, labels)
        if self.target_transform is not None:
            boxes, labels = self.target_transform(boxes, labels)
        return image, boxes, labels


def make_dataset(roots: Union[PathLike, Sequence[PathLike]], split: Optional[str], transform=None,
                 target_transform=None, keep_difficult: bool = False,
                 class_names: Optional[Sequence[str]] = None) -> Dataset:
    """One :class:`VOCDataset` per root (``--datasets A B``), concatenated when there are several."""
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise HRankError("no dataset given: pass at least one VOCdevkit/VOC20xx folder with --datasets")
    sets = [VOCDataset(r, split, transform, target_transform, keep_difficult, class_names) for r in roots]
    names = {ds.class_names for ds in sets}
    if len(names) > 1:
        raise HRankError("the datasets have different class lists: give them the same labels.txt or pass --labels")
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def collate(batch):
    """Stack images; stack targets when every sample has the same shape, else keep them as lists."""
    images, boxes, labels = zip(*batch)
    images = torch.stack([torch.as_tensor(im) for im in images])
    return images, _stack_or_list(boxes), _stack_or_list(labels)


def _stack_or_list(items):
    tensors = [torch.as_tensor(x) for x in items]
    if all(t.shape == tensors[0].shape for t in tensors):
        return default_collate(tensors)
    return list(tensors)


# ----------------------------------------------------------------------------------------------------------
# transforms (numpy / cv2; random numbers from numpy's global RNG so seeding numpy makes them repeatable)


def _iou_with(boxes: np.ndarray, rect: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_r = (rect[2] - rect[0]) * (rect[3] - rect[1])
    return inter / np.maximum(area_b + area_r - inter, 1e-9)


def photometric_distort(image: np.ndarray) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (each with probability 1/2); float32 0..255."""
    rng = np.random
    img = image.astype(np.float32)
    if rng.randint(2):
        img += rng.uniform(-32, 32)
    contrast_first = rng.randint(2)
    if contrast_first and rng.randint(2):
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255)
    do_sat, do_hue = rng.randint(2), rng.randint(2)
    if do_sat or do_hue:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S in [0, 1], V in [0, 255]
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 1)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18)) % 360
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.randint(2):
        img *= rng.uniform(0.5, 1.5)
    return np.clip(img, 0, 255)


def expand(image: np.ndarray, boxes: np.ndarray, mean: Sequence[float], max_ratio: float = 4.0):
    """Zoom out: place the image at a random spot of a mean-filled canvas up to ``max_ratio`` times larger."""
    h, w, c = image.shape
    ratio = np.random.uniform(1, max_ratio)
    left = np.random.uniform(0, w * ratio - w)
    top = np.random.uniform(0, h * ratio - h)
    canvas = np.empty((int(h * ratio), int(w * ratio), c), dtype=image.dtype)
    canvas[...] = np.asarray(mean, dtype=image.dtype)
    canvas[int(top):int(top) + h, int(left):int(left) + w] = image
    boxes = boxes.copy()
    boxes[:, :2] += (int(left), int(top))
    boxes[:, 2:] += (int(left), int(top))
    return canvas, boxes


CROP_MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -1.0)  # None: keep the image; -1: any crop


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, trials: int = 50, rounds: int = 20):
    """SSD random IoU crop: a patch with IoU >= a random minimum with some box; keeps boxes centred inside."""
    h, w = image.shape[:2]
    if len(boxes) == 0:
        return image, boxes, labels
    for _ in range(rounds):
        mode = CROP_MODES[np.random.randint(len(CROP_MODES))]
        if mode is None:
            return image, boxes, labels
        for _ in range(trials):
            cw, ch = np.random.uniform(0.3 * w, w), np.random.uniform(0.3 * h, h)
            if not 0.5 <= ch / cw <= 2:
                continue
            left, top = np.random.uniform(0, w - cw), np.random.uniform(0, h - ch)
            rect = np.array([int(left), int(top), int(left + cw), int(top + ch)], dtype=np.float32)
            if rect[2] <= rect[0] or rect[3] <= rect[1]:
                continue
            if _iou_with(boxes, rect).max() < mode:
                continue
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = ((centers > rect[:2]) & (centers < rect[2:])).all(1)
            if not inside.any():
                continue
            kept = boxes[inside].copy()
            kept[:, :2] = np.maximum(kept[:, :2], rect[:2]) - rect[:2]
            kept[:, 2:] = np.minimum(kept[:, 2:], rect[2:]) - rect[:2]
            patch = image[int(rect[1]):int(rect[3]), int(rect[0]):int(rect[2])]
            return patch, kept, labels[inside]
    return image, boxes, labels


def hflip(image: np.ndarray, boxes: np.ndarray):
    w = image.shape[1]
    boxes = boxes.copy()
    boxes[:, 0::2] = w - boxes[:, 2::-2]
    return image[:, ::-1], boxes


class TrainAugmentation:
    """SSD training augmentation: photometric distortion, expand, IoU crop, flip, resize, normalise.

    ``(image uint8 HWC RGB, boxes Nx4 pixels, labels) -> (CHW float tensor, boxes in [0, 1], labels)``.
    """

    def __init__(self, size: int, mean: Sequence[float], std: float):
        self.size, self.mean, self.std = size, tuple(float(m) for m in mean), float(std)

    geometric = True

    def __call__(self, image: np.ndarray, boxes, labels):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        img = photometric_distort(image)
        if self.geometric:
            if np.random.randint(2):
                img, boxes = expand(img, boxes, self.mean)
            img, boxes, labels = random_crop(img, boxes, labels)
        if np.random.randint(2):
            img, boxes = hflip(img, boxes)
        h, w = img.shape[:2]
        boxes = boxes / np.array([w, h, w, h], dtype=np.float32)
        boxes = np.clip(boxes, 0, 1).astype(np.float32)
        x = to_input(np.ascontiguousarray(img), self.size, self.mean, self.std)
        return x.contiguous(), boxes, labels


class LightAugmentation(TrainAugmentation):
    """Photometric distortion and flip only: faster to learn from for small models on easy data."""

    geometric = False


class TestTransform:
    """Resize and normalise only (exactly :func:`to_input`); boxes become relative to the image."""

    __test__ = False  # not a pytest class

    def __init__(self, size: int, mean: Sequence[float], std: float):
        self.size, self.mean, self.std = size, tuple(float(m) for m in mean), float(std)

    def __call__(self, image: np.ndarray, boxes=None, labels=None):
        h, w = image.shape[:2]
        x = to_input(image, self.size, self.mean, self.std)
        if boxes is not None:
            boxes = (np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
                     / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        return x, boxes, labels
