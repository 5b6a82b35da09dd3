"""VOC reading, label files, synthetic data and the SSD transforms."""

from __future__ import annotations

import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from hrank_ssd.data import synthetic
from hrank_ssd.data.augment import TrainAugmentation
from hrank_ssd.data.synthetic import DISTRACTORS, SHAPES, make_synthetic_voc
from hrank_ssd.data.voc import (
    VOC_CLASSES,
    TestTransform,
    VOCDataset,
    collate,
    make_dataset,
    read_labels,
    to_input,
    write_labels,
)
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.vgg16_ssd import CONFIG as VGG16_SSD

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOC2007 = SHARED / "voc2007_sample" / "VOC2007"
VOC2012 = SHARED / "voc2012_sample" / "VOC2012"
MEAN, STD = VGG16_SSD.image_mean, VGG16_SSD.image_std


def xml_objects(path):
    """(name, [xmin, ymin, xmax, ymax] as written, difficult) for each top-level object of a VOC XML."""
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        bb = obj.find("bndbox")
        out.append((obj.find("name").text.strip(), [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")],
                    int(obj.find("difficult").text) if obj.find("difficult") is not None else 0))
    return out


# ---------------------------------------------------------------------------------------------- labels


def test_voc_classes():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("person") == 14


def test_label_file_round_trip(tmp_path):
    write_labels(tmp_path / "l.txt", ["a", "b"])
    assert (tmp_path / "l.txt").read_text() == "BACKGROUND\na\nb\n"
    assert read_labels(tmp_path / "l.txt") == ["BACKGROUND", "a", "b"]
    (tmp_path / "m.txt").write_text("x\n\ny\n")
    assert read_labels(tmp_path / "m.txt") == ["BACKGROUND", "x", "y"]


def test_label_file_in_pytorch_ssd_dataset_layout(tmp_path):
    """pytorch-ssd's VOCDataset reads a dataset root's labels.txt as comma-separated names on one line."""
    from hrank_ssd.data.voc import VOC_CLASSES

    (tmp_path / "labels.txt").write_text(", ".join(VOC_CLASSES) + "\n")
    assert read_labels(tmp_path / "labels.txt") == ["BACKGROUND", *VOC_CLASSES]
    (tmp_path / "two.txt").write_text("cat,dog,\nbird, traffic light\n")
    assert read_labels(tmp_path / "two.txt") == ["BACKGROUND", "cat", "dog", "bird", "trafficlight"]
    (tmp_path / "lines.txt").write_text("BACKGROUND\ntraffic light\ncat\n")
    assert read_labels(tmp_path / "lines.txt") == ["BACKGROUND", "traffic light", "cat"]


def test_label_file_errors(tmp_path):
    with pytest.raises(HRankError, match="not found"):
        read_labels(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(HRankError, match="empty"):
        read_labels(tmp_path / "empty.txt")


# ---------------------------------------------------------------------------------------------- synthetic


def test_synthetic_layout_and_labels(synthetic_voc):
    root = synthetic_voc
    assert root.name == "VOC2007" and root.parent.name == "VOCdevkit"
    assert read_labels(root / "labels.txt") == ["BACKGROUND", *SHAPES]
    train = (root / "ImageSets/Main/trainval.txt").read_text().split()
    test = (root / "ImageSets/Main/test.txt").read_text().split()
    assert len(train) == 24 and len(test) == 12 and not set(train) & set(test)
    n_difficult = n_objects = 0
    for image_id in train + test:
        assert (root / "JPEGImages" / f"{image_id}.jpg").is_file()
        tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        assert tree.findtext("size/width") == "300" and tree.findtext("size/height") == "300"
        objs = xml_objects(root / "Annotations" / f"{image_id}.xml")
        assert 1 <= len(objs)
        for name, (x1, y1, x2, y2), difficult in objs:
            assert name in SHAPES
            assert 1 <= x1 < x2 <= 300 and 1 <= y1 < y2 <= 300  # 1-based pixel corners inside the image
            n_objects += 1
            n_difficult += difficult
        assert sum(1 for o in objs if not o[2]) <= synthetic.MAX_OBJECTS
    assert 0 < n_difficult < n_objects * 0.2


def test_synthetic_scenes_hide_unlabelled_look_alikes_among_objects_of_every_size(monkeypatch):
    drawn = []
    draw = synthetic._draw
    monkeypatch.setattr(synthetic, "_draw", lambda img, kind, *a: drawn.append(kind) or draw(img, kind, *a))
    scenes = [synthetic.make_scene(np.random.default_rng((0, 0, i)), 300) for i in range(60)]
    labelled = [obj for _, objs in scenes for obj in objs]
    assert {kind for kind, _, _ in labelled} == set(SHAPES) and set(drawn) == set(SHAPES) | set(DISTRACTORS)
    assert len(drawn) - len(labelled) == sum(kind in DISTRACTORS for kind in drawn) > 30  # never labelled
    sides = [max(b[2] - b[0], b[3] - b[1]) / 300 for _, b, difficult in labelled if not difficult]
    assert min(sides) < 1.2 * synthetic.SIDE[0] and max(sides) > 0.8 * synthetic.SIDE[1]
    assert np.median(sides) < np.mean(synthetic.SIDE)  # log-uniform: more small objects than large ones
    boxes = [[b for _, b, _ in objs] for _, objs in scenes]
    assert any(synthetic._overlap(a, b) > 0 for bs in boxes for i, a in enumerate(bs) for b in bs[i + 1:])


def test_synthetic_deterministic(tmp_path, synthetic_voc):
    a = make_synthetic_voc(tmp_path / "a", num_train=24, num_test=12, seed=0)
    b = make_synthetic_voc(tmp_path / "b", num_train=6, num_test=3, seed=1)
    for p in sorted((synthetic_voc / "Annotations").glob("*.xml")):
        assert (a / "Annotations" / p.name).read_bytes() == p.read_bytes()
    for p in sorted((synthetic_voc / "JPEGImages").glob("*.jpg")):
        assert (a / "JPEGImages" / p.name).read_bytes() == p.read_bytes()
    assert (a / "ImageSets/Main/test.txt").read_bytes() == (synthetic_voc / "ImageSets/Main/test.txt").read_bytes()
    differ = [(b / "Annotations" / p.name).read_bytes() != (a / "Annotations" / p.name).read_bytes()
              for p in (b / "Annotations").glob("*.xml")]
    assert len(differ) == 9 and all(differ)


def test_synthetic_bad_arguments(tmp_path):
    with pytest.raises(HRankError):
        make_synthetic_voc(tmp_path, num_train=0)
    with pytest.raises(HRankError):
        make_synthetic_voc(tmp_path, image_size=32)


def test_make_synthetic_script(tmp_path, repo_root):
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["make_synthetic_voc.py", "--out", str(tmp_path), "--num_train", "3", "--num_test", "2",
                "--image_size", "128", "--seed", "5"]
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(str(repo_root / "data_scripts" / "make_synthetic_voc.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert e.value.code == 0
    ds = VOCDataset(tmp_path / "VOCdevkit" / "VOC2007", "test")
    assert len(ds) == 2 and ds.get_image(0).shape == (128, 128, 3)


# ---------------------------------------------------------------------------------------------- VOCDataset


def test_dataset_on_synthetic(synthetic_voc):
    train, test = VOCDataset(synthetic_voc), VOCDataset(synthetic_voc, is_test=True)
    assert len(train) == 24 and len(test) == 12
    assert train.class_names == ("BACKGROUND", *SHAPES) and train.class_dict["ring"] == 5
    assert test.ids == (synthetic_voc / "ImageSets/Main/test.txt").read_text().split()
    for ds in (train, test):
        for i in range(len(ds)):
            image_id, (boxes, labels, difficult) = ds.get_annotation(i)
            objs = xml_objects(synthetic_voc / "Annotations" / f"{image_id}.xml")
            assert boxes.dtype == np.float32 and labels.dtype == np.int64 and difficult.dtype == np.uint8
            np.testing.assert_array_equal(boxes, np.array([o[1] for o in objs], dtype=np.float32) - 1)
            assert [ds.class_names[k] for k in labels] == [o[0] for o in objs]
            assert difficult.tolist() == [o[2] for o in objs]
            image = ds.get_image(i)
            assert image.shape == (300, 300, 3) and image.dtype == np.uint8


@pytest.mark.parametrize("is_test", [False, True])
def test_difficult_dropped_unless_kept(synthetic_voc, is_test):
    ds = VOCDataset(synthetic_voc, is_test=is_test)
    keep = VOCDataset(synthetic_voc, is_test=is_test, keep_difficult=True)
    hits = 0
    for i in range(len(ds)):
        _, (boxes, labels, difficult) = ds.get_annotation(i)
        image, b, lab = ds[i]
        np.testing.assert_array_equal(b, boxes[difficult == 0])
        np.testing.assert_array_equal(lab, labels[difficult == 0])
        _, b2, _ = keep[i]
        np.testing.assert_array_equal(b2, boxes)
        hits += int(difficult.any())
    assert hits > 0 or not is_test  # the fixture's test split has difficult objects: the dropping is exercised


def test_unknown_classes_skipped(synthetic_voc):
    ds = VOCDataset(synthetic_voc, class_names=("BACKGROUND", "circle"))
    for i in range(len(ds)):
        image_id, (_, labels, _) = ds.get_annotation(i)
        n_circles = sum(o[0] == "circle" for o in xml_objects(synthetic_voc / "Annotations" / f"{image_id}.xml"))
        assert labels.tolist() == [1] * n_circles


def test_transforms_and_loader(synthetic_voc):
    from hrank_ssd.nets.priors import MatchPrior, generate_priors
    from hrank_ssd.nets.vgg16_ssd import CONFIG as cfg

    priors = generate_priors(cfg)
    ds = make_dataset([synthetic_voc], "trainval", TrainAugmentation(300, MEAN, STD), MatchPrior(priors, cfg))
    images, locs, labels = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert images.shape == (4, 3, 300, 300) and images.dtype == torch.float32
    assert locs.shape == (4, priors.size(0), 4) and labels.shape == (4, priors.size(0))
    assert (labels > 0).any(1).all()  # every image keeps at least one matched object
    # variable-length targets stay lists
    ds = make_dataset([synthetic_voc], "test", TestTransform(300, MEAN, STD))
    images, boxes, labels = collate([ds[i] for i in range(4)])
    assert images.shape == (4, 3, 300, 300)
    assert [len(b) for b in boxes] == [len(lab) for lab in labels]


def test_make_dataset_concat(synthetic_voc):
    ds = make_dataset([synthetic_voc, synthetic_voc], "test")
    assert isinstance(ds, ConcatDataset) and len(ds) == 24
    from hrank_ssd.train.config import TrainConfig, as_config

    with pytest.raises(HRankError, match="no training dataset"):  # its caller refuses an empty list
        as_config(TrainConfig(datasets=[], validation_dataset=str(synthetic_voc)))


def test_make_dataset_refuses_different_class_lists_unless_one_is_given(synthetic_voc, tmp_path):
    other = tmp_path / "VOC2007"
    shutil.copytree(synthetic_voc, other)
    write_labels(other / "labels.txt", ["cat", "dog"])
    with pytest.raises(HRankError, match="different class lists.*--label_file") as e:
        make_dataset([synthetic_voc, other], "test")
    assert "\n" not in str(e.value)
    names = ("BACKGROUND", *SHAPES)  # --label_file: both roots read with these names
    ds = make_dataset([synthetic_voc, other], "test", class_names=names)
    assert len(ds) == 24 and all(d.class_names == names for d in ds.datasets)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_root(tmp_path):
    with pytest.raises(HRankError, match="not found") as e:
        VOCDataset(tmp_path / "nope")
    assert "\n" not in str(e.value) and "VOC2007" in str(e.value)


def test_missing_split(synthetic_voc):
    with pytest.raises(HRankError) as e:
        VOCDataset(synthetic_voc, split="val")
    msg = str(e.value)
    assert "val.txt" in msg and "test, trainval" in msg and "\n" not in msg


def test_empty_split_and_missing_files(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "ImageSets/Main/test.txt").write_text("\n")
    with pytest.raises(HRankError, match="no images"):
        VOCDataset(root, is_test=True)
    (root / "ImageSets/Main/test.txt").write_text("000001\n")
    ds = VOCDataset(root, is_test=True)
    with pytest.raises(HRankError, match="000001.xml not found"):
        ds.get_annotation(0)
    with pytest.raises(HRankError, match="000001.jpg not found"):
        ds.get_image(0)


# ---------------------------------------------------------------------------------------------- real VOC samples


@pytest.mark.skipif(not VOC2007.is_dir(), reason="no ../shared/data/voc2007_sample")
def test_real_voc2007_sample():
    ds = VOCDataset(VOC2007, is_test=True)
    assert ds.ids == (VOC2007 / "ImageSets/Main/test.txt").read_text().split()
    assert ds.class_names == ("BACKGROUND",) + VOC_CLASSES
    # 000001.xml: dog (48, 240, 195, 371) and person (8, 12, 352, 498), 1-based in the file
    image_id, (boxes, labels, difficult) = ds.get_annotation(ds.ids.index("000001"))
    np.testing.assert_array_equal(boxes, [[47, 239, 194, 370], [7, 11, 351, 497]])
    assert labels.tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    assert ds.get_image(ds.ids.index("000001")).shape == (500, 353, 3)
    for i, image_id in enumerate(ds.ids):
        objs = xml_objects(VOC2007 / "Annotations" / f"{image_id}.xml")
        _, (boxes, labels, difficult) = ds.get_annotation(i)
        np.testing.assert_array_equal(boxes, np.array([o[1] for o in objs], dtype=np.float32).reshape(-1, 4) - 1)
        assert [ds.class_names[k] for k in labels] == [o[0] for o in objs]
        assert difficult.tolist() == [o[2] for o in objs]
        _, b, _ = ds[i]
        assert len(b) == sum(1 for o in objs if not o[2])
    # 000005 has difficult chairs
    _, (_, _, difficult) = ds.get_annotation(ds.ids.index("000005"))
    assert difficult.sum() > 0


@pytest.mark.skipif(not VOC2012.is_dir(), reason="no ../shared/data/voc2012_sample")
def test_real_voc2012_sample():
    splits = sorted(p.stem for p in (VOC2012 / "ImageSets/Main").glob("*.txt"))
    assert "trainval" in splits
    ds = VOCDataset(VOC2012, split="trainval")
    seen = set()
    for i in range(len(ds)):
        image_id, (boxes, labels, difficult) = ds.get_annotation(i)
        image = ds.get_image(i)
        h, w = image.shape[:2]
        assert len(boxes) == len(ET.parse(VOC2012 / "Annotations" / f"{image_id}.xml").getroot().findall("object"))
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w - 1).all() and (boxes[:, 3] <= h - 1).all()
        seen.update(labels.tolist())
    assert seen == set(range(1, 21))  # all 20 classes, and body parts (<part><name>hand) are not objects


# ---------------------------------------------------------------------------------------------- transforms


def _seed(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def test_train_augmentation(synthetic_voc):
    ds = VOCDataset(synthetic_voc, keep_difficult=True)
    aug = TrainAugmentation(300, MEAN, STD)
    _seed(0)
    outs = []
    for i in range(len(ds)):
        image, boxes, labels = ds[i]
        for _ in range(3):
            x, b, lab = aug(image, boxes, labels)
            assert x.shape == (3, 300, 300) and x.dtype == torch.float32
            assert b.dtype == np.float32 and b.shape == (len(lab), 4) and len(lab) >= 1
            assert (b >= 0).all() and (b <= 1).all() and (b[:, 2:] >= b[:, :2]).all()
            assert set(lab.tolist()) <= set(labels.tolist())
            assert float(x.min()) >= -max(MEAN) - 1e-3 and float(x.max()) <= 255 - min(MEAN) + 1e-3
            outs.append((x, b, lab))
    # not the identity: some outputs differ from the plain test transform
    assert any(not torch.equal(o[0], to_input(ds.get_image(0), 300, MEAN, STD)) for o in outs[:3])
    _seed(0)
    image, boxes, labels = ds[0]
    again = [aug(image, boxes, labels) for _ in range(3)]
    for (x1, b1, l1), (x2, b2, l2) in zip(outs[:3], again):
        assert torch.equal(x1, x2)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(l1, l2)


def test_train_augmentation_geometry():
    """One white box on black: after any augmentation the box still frames the white pixels."""
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = 255
    boxes = np.array([[100, 50, 199, 149]], np.float32)
    aug = TrainAugmentation(300, (0, 0, 0), 1.0)
    _seed(3)
    for _ in range(20):
        x, b, lab = aug(image, boxes, np.array([1]))
        assert lab.tolist() == [1]
        x1, y1, x2, y2 = (b[0] * 300).round().astype(int)
        gray = x.mean(0)
        bright = gray > gray.max() / 2  # background <= 48, square >= 111 after any photometric change
        ys, xs = np.nonzero(bright.numpy())
        assert abs(xs.min() - x1) <= 3 and abs(xs.max() - x2) <= 3
        assert abs(ys.min() - y1) <= 3 and abs(ys.max() - y2) <= 3


def test_test_transform_is_to_input(synthetic_voc):
    ds = VOCDataset(synthetic_voc, is_test=True)
    image = ds.get_image(0)
    _, (boxes, labels, _) = ds.get_annotation(0)
    for size in (300, 160):
        x, b, lab = TestTransform(size, MEAN, STD)(image, boxes, labels)
        assert torch.equal(x, to_input(image, size, MEAN, STD))
        np.testing.assert_allclose(b, boxes / 300, rtol=1e-6)
        assert lab.tolist() == labels.tolist()


def test_light_augmentation_only_flips_boxes():
    from hrank_ssd.data.augment import LightAugmentation

    image = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[10, 20, 110, 120]], np.float32)
    aug = LightAugmentation(300, VGG16_SSD.image_mean, VGG16_SSD.image_std)
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        random.seed(seed)
        x, b, labels = aug(image, boxes, np.array([1]))
        assert x.shape == (3, 300, 300) and labels.tolist() == [1]
        seen.add(tuple(round(float(v), 4) for v in b[0]))
    # the box is either where it was or mirrored, never cropped or shrunk
    assert seen == {(round(10 / 300, 4), 0.1, round(110 / 300, 4), 0.6), (round(190 / 300, 4), 0.1, round(290 / 300, 4), 0.6)}


def test_annotations_parsed_once_and_handed_out_as_copies(synthetic_voc, monkeypatch):
    import hrank_ssd.data.voc as data_module

    ds = VOCDataset(synthetic_voc, "test")
    calls = []
    parse = data_module.ET.parse
    monkeypatch.setattr(data_module.ET, "parse", lambda path: calls.append(path) or parse(path))
    first = [ds.get_annotation(i) for i in range(len(ds))]
    k = next(i for i, (_, (boxes, _, _)) in enumerate(first) if len(boxes))
    first[k][1][0][:] = -1  # a transform changing boxes in place
    again = [ds.get_annotation(i) for i in range(len(ds))]
    _ = [ds[i] for i in range(len(ds))]
    assert len(calls) == len(ds)  # one parse per file, however often the set is read
    assert (again[k][1][0] >= 0).all()
    fresh = VOCDataset(synthetic_voc, "test")
    for (i_a, a), (i_b, b) in zip(again, (fresh.get_annotation(i) for i in range(len(fresh)))):
        assert i_a == i_b and all(np.array_equal(x, y) for x, y in zip(a, b))
