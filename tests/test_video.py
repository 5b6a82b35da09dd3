"""Video demo: synthetic clip -> CLI -> annotated video with the same frame count and fps; drawing; errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hrank_ssd import cli
from hrank_ssd.course import video
from hrank_ssd.errors import HRankError
from hrank_ssd.nets import models

SIZE = (160, 120)  # small frames keep the test fast
FPS = 5


def _count_and_fps(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    fps = cap.get(cv2.CAP_PROP_FPS)
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    return n, fps, shape


@pytest.fixture(scope="module")
def clip(tmp_path_factory, synthetic_voc):
    out = tmp_path_factory.mktemp("clip") / "synthetic.mp4"
    video.make_synthetic_video(out, synthetic_voc, seconds=2, fps=FPS, size=SIZE)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    models.save_model(models.build_model("vgg16-ssd", 6, width=0.125), path)
    return path


@pytest.fixture
def run_cli(tiny_model, synthetic_voc):
    def run(in_video, out_video, *extra, net="vgg16-ssd"):
        return cli.main(["video", net, str(tiny_model), str(synthetic_voc / "labels.txt"), str(in_video),
                         str(out_video), "--no_progress", "--device", "cpu", *extra])
    return run


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_synthetic_clip_has_requested_frames_and_pans(clip):
    n, fps, shape = _count_and_fps(clip)
    assert n == 2 * FPS and fps == pytest.approx(FPS)
    assert shape == (SIZE[1], SIZE[0], 3)
    first, last = video.sample_frames(clip, n=2)
    assert first.shape == last.shape == (SIZE[1], SIZE[0], 3)
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 5  # the view moved
    assert video.video_info(clip) == {"frames": n, "fps": pytest.approx(FPS), "width": SIZE[0], "height": SIZE[1]}


def test_cli_writes_same_frame_count_and_fps(run_cli, clip, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    assert run_cli(clip, out, "--threshold", "0.01", "--top_k", "3") == 0
    n_in, fps_in, shape_in = _count_and_fps(clip)
    n_out, fps_out, shape_out = _count_and_fps(out)
    assert (n_out, shape_out) == (n_in, shape_in)
    assert fps_out == pytest.approx(fps_in)
    assert f"{n_in} frames" in capsys.readouterr().out
    assert _no_leftovers(tmp_path) == []
    # something was drawn: at least the FPS label differs from the input frame
    a, b = video.sample_frames(clip, n=1)[0], video.sample_frames(out, n=1)[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() > 100


def test_max_frames_gives_exactly_that_many(run_cli, clip, tmp_path):
    out = tmp_path / "short.mp4"
    assert run_cli(clip, out, "--max_frames", "3") == 0
    assert _count_and_fps(out)[0] == 3


def test_process_video_api(tiny_model, synthetic_voc, clip, tmp_path):
    from hrank_ssd.data.voc import read_labels
    from hrank_ssd.nets.predictor import Predictor

    names = read_labels(synthetic_voc / "labels.txt")
    pred = Predictor(models.load_model(tiny_model), "cpu")
    info = video.process_video(pred, names, clip, tmp_path / "o.avi", threshold=0.01, max_frames=4, progress=False)
    assert info["frames"] == 4 and info["fps_in"] == pytest.approx(FPS) and info["avg_fps"] > 0
    assert info["out_path"] == str(tmp_path / "o.avi")
    assert len(video.sample_frames(info["out_path"], n=10)) == 4


def test_annotate_frame_draws_where_the_box_is():
    frame = np.full((120, 160, 3), 127, np.uint8)
    boxes = torch.tensor([[40.0, 50.0, 100.0, 110.0]])
    out = video.annotate_frame(frame, boxes, torch.tensor([2]), torch.tensor([0.9]), ["BACKGROUND", "a", "b"])
    assert out.shape == frame.shape and (frame == 127).all()  # input untouched
    changed = np.any(out != frame, axis=2)
    assert changed[50:111, 40].any() and changed[110, 40:101].any()  # the box's edges
    assert not changed[70:90, 60:80].any()  # its inside is left alone
    assert (out[80, 40] == video.class_colour(2)).all()
    with_fps = video.annotate_frame(frame, np.zeros((0, 4)), [], [], ["BACKGROUND"], fps=12.5)
    assert np.any(with_fps[:20, :60] != 127) and not np.any(with_fps[60:] != 127)


def test_class_colours_are_distinct():
    colours = {video.class_colour(i) for i in range(1, 21)}
    assert len(colours) == 20


def _assert_one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_input(run_cli, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert run_cli(tmp_path / "nope.mp4", out) == 2
    assert "not found" in _assert_one_error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 50])
def test_non_video_input(run_cli, tmp_path, capsys, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    out = tmp_path / "out.mp4"
    assert run_cli(bad, out) == 2
    _assert_one_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_output_into_missing_folder(run_cli, clip, tmp_path, capsys):
    out = tmp_path / "missing" / "out.mp4"
    assert run_cli(clip, out) == 2
    assert "does not exist" in _assert_one_error(capsys)
    assert not out.parent.exists()


def test_output_without_video_suffix(run_cli, clip, tmp_path, capsys):
    assert run_cli(clip, tmp_path / "out") == 2
    assert ".mp4" in _assert_one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_wrong_net_type(run_cli, clip, tmp_path, capsys):
    assert run_cli(clip, tmp_path / "o.mp4", net="mb1-ssd") == 2
    assert "vgg16-ssd as the net type" in _assert_one_error(capsys)


def test_failure_mid_run_leaves_no_file(tmp_path, clip):
    class Boom:
        calls = 0

        def predict(self, image, top_k, prob_threshold):
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("boom")
            return torch.zeros((0, 4)), torch.zeros(0, dtype=torch.long), torch.zeros(0)

    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError):
        video.process_video(Boom(), ["BACKGROUND"], clip, out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_max_frames(tmp_path, clip):
    with pytest.raises(HRankError, match="max_frames"):
        video.process_video(None, ["BACKGROUND"], clip, tmp_path / "o.mp4", max_frames=0)


def test_real_clip_first_frames(run_cli, shared_data, tmp_path):
    src = shared_data / "video" / "vtest.mp4" if shared_data else None
    if src is None or not src.is_file():
        pytest.skip("../shared/data/video/vtest.mp4 not present")
    out = tmp_path / "vtest_annotated.mp4"
    assert run_cli(src, out, "--max_frames", "5") == 0
    n, fps, shape = _count_and_fps(out)
    cap = cv2.VideoCapture(str(src))
    fps_in, (ok, first) = cap.get(cv2.CAP_PROP_FPS), cap.read()
    cap.release()
    assert ok and n == 5 and fps == pytest.approx(fps_in) and shape == first.shape
