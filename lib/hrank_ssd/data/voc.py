"""VOC-format datasets (0-based pixel boxes: the XML's minus 1), label files and the SSD test transform."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

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


def to_input(image: np.ndarray, image_size: int, mean: Sequence[float], std: float) -> torch.Tensor:
    """HxWx3 RGB uint8 image -> normalised CHW float tensor, as pytorch-ssd's PredictionTransform."""
    x = cv2.resize(image, (image_size, image_size)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.float32(std)
    return torch.from_numpy(x).permute(2, 0, 1)


def read_labels(path: Path | str) -> List[str]:
    """Class names, ``BACKGROUND`` first (prepended when missing), one per line or comma-separated."""
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


def write_labels(path: Path | str, names: Sequence[str]) -> None:
    """Write ``BACKGROUND``, then the class ``names``, one per line."""
    atomic_write_text(path, "\n".join(["BACKGROUND", *names]) + "\n")


def dataset_labels(root: Path | str) -> Tuple[str, ...]:
    """The label file in ``root`` (one of LABEL_FILES), else BACKGROUND + the VOC classes."""
    found = next((p for p in (Path(root) / name for name in LABEL_FILES) if p.is_file()), None)
    return tuple(read_labels(found)) if found else ("BACKGROUND", *VOC_CLASSES)


class VOCDataset(Dataset):
    """A ``VOCdevkit/VOC20xx`` folder: ``dataset[i]`` is ``(image, boxes, labels)``, transformed, no difficult ones."""

    def __init__(self, root: Path | str, split: Optional[str] = None, transform=None, target_transform=None,
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
        self.class_names = tuple(class_names or dataset_labels(self.root))
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
        """``(image_id, (boxes, labels, is_difficult))`` of every object of a known class (copies; parsed once)."""
        image_id = self.ids[index]
        if image_id not in self._annotations:
            path = self._path("Annotations", image_id, ".xml")
            try:
                objects = ET.parse(path).findall("object")
            except ET.ParseError as e:
                raise HRankError(f"cannot parse annotation {path} ({e}): re-download or fix the file") from None
            boxes, labels, difficult = [], [], []
            for obj in objects:
                name, bb = (obj.findtext("name") or "").strip(), obj.find("bndbox")
                label = self.class_dict.get(name, self.class_dict.get(name.lower()))
                if label is not None and bb is not None:
                    boxes.append([float(bb.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
                    labels.append(label)
                    difficult.append(1 if int(float((obj.findtext("difficult") or "").strip() or 0)) else 0)
            self._annotations[image_id] = (np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                                           np.asarray(labels, dtype=np.int64), np.asarray(difficult, dtype=np.uint8))
        return image_id, tuple(a.copy() for a in self._annotations[image_id])

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


def make_dataset(roots: Sequence[Path | str], split: Optional[str], transform=None, target_transform=None,
                 keep_difficult: bool = False, class_names: Optional[Sequence[str]] = None) -> Dataset:
    """One :class:`VOCDataset` per root (``--datasets A B``), concatenated when there are several."""
    sets = [VOCDataset(r, split, transform, target_transform, keep_difficult, class_names) for r in roots]
    if len({ds.class_names for ds in sets}) > 1:
        raise HRankError("the datasets have different class lists: give them the same labels.txt or pass --label_file")
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def collate(batch):
    """Stack images; stack targets when every sample has the same shape, else keep them as lists."""
    images, *targets = ([torch.as_tensor(x) for x in items] for items in zip(*batch))
    return (torch.stack(images), *(default_collate(t) if len({x.shape for x in t}) == 1 else t for t in targets))


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
