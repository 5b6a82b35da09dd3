"""Video in, annotated video out (pytorch-ssd's ``run_ssd_video_demo.py``), plus a synthetic demo clip."""

from __future__ import annotations

import colorsys
import contextlib
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hrank_ssd.data.voc import VOCDataset
from hrank_ssd.errors import HRankError
from hrank_ssd.progress import tqdm

PathLike = Union[str, os.PathLike]
FOURCC = "mp4v"
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")
DEFAULT_FPS = 25.0  # used when a container reports no (or a nonsense) frame rate
FPS_WINDOW = 10  # the on-frame FPS averages the predict time of this many latest frames


@contextlib.contextmanager
def _quiet_opencv():
    """Silence OpenCV's own WARN lines (an HRankError says what went wrong instead)."""
    log = cv2.utils.logging
    old = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        log.setLogLevel(old)


def class_colour(label: int) -> Tuple[int, int, int]:
    """A distinct, saturated BGR colour per class index (golden-ratio hue steps, stable across runs)."""
    r, g, b = colorsys.hsv_to_rgb((int(label) * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def _text_with_background(img: np.ndarray, text: str, org: Tuple[int, int], colour, scale: float,
                          thickness: int) -> None:
    """``text`` with its bottom-left corner at ``org``, on a filled box of ``colour``, kept inside the frame."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    h, w = img.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 2, 0)))
    y = int(min(max(org[1], th + base + 2), h - base - 1))
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 2, y + base), colour, cv2.FILLED)
    lum = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    ink = (0, 0, 0) if lum > 128 else (255, 255, 255)
    cv2.putText(img, text, (x + 1, y - 1), font, scale, ink, thickness, cv2.LINE_AA)


def annotate_frame(frame_bgr: np.ndarray, boxes, labels, scores, class_names: Sequence[str],
                   fps: Optional[float] = None) -> np.ndarray:
    """A copy of ``frame_bgr`` with each box, ``"name: score"`` in its class's colour and, when given, ``FPS: x``."""
    img = np.ascontiguousarray(frame_bgr).copy()
    h, w = img.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    scale = max(0.4, min(h, w) / 600.0)
    thick = max(1, int(round(min(h, w) / 300.0)))
    for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
        x1, x2 = int(round(np.clip(x1, 0, w - 1))), int(round(np.clip(x2, 0, w - 1)))
        y1, y2 = int(round(np.clip(y1, 0, h - 1))), int(round(np.clip(y2, 0, h - 1)))
        colour = class_colour(label)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick + 1)
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        _text_with_background(img, f"{name}: {score:.2f}", (x1, y1 - 1), colour, scale * 0.6, thick)
    if fps is not None:
        _text_with_background(img, f"FPS: {fps:.1f}", (4, int(30 * scale)), (32, 32, 32), scale * 0.8, thick)
    return img


def open_video(in_path: PathLike):
    """``(capture, fps, frame_count_or_0, first_frame)``; a clear HRankError when it is not a readable video."""
    in_path = Path(in_path)
    if not in_path.is_file():
        raise HRankError(f"input video not found: {in_path}; check the path (e.g. make one with "
                         f"hrank_ssd.course.video.make_synthetic_video)")
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(in_path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None or first.ndim != 3:
        cap.release()
        raise HRankError(f"{in_path} has no readable frames: it is empty, corrupt or not a video; pass an "
                         f".mp4/.avi file OpenCV can decode (re-encode it with ffmpeg if needed)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if math.isfinite(count) and count > 0 else 0
    return cap, float(fps), count, first


@contextlib.contextmanager
def _atomic_video_writer(out_path: PathLike, fps: float, size: Tuple[int, int]):
    """Yield ``write(frame)`` into a temp file, renamed to ``out_path`` when the block ends cleanly."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise HRankError(f"output {out_path} needs a video suffix ({', '.join(VIDEO_SUFFIXES)}); e.g. "
                         f"{out_path.with_suffix('.mp4')}")
    if not os.access(out_path.parent, os.W_OK | os.X_OK):
        raise HRankError(f"output folder {out_path.parent} does not exist or is not writable: create it "
                         f"(mkdir -p {out_path.parent}) or pick another output path")
    tmp = out_path.with_name(f".{out_path.stem}.tmp{os.getpid()}{out_path.suffix}")
    with _quiet_opencv():
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), float(fps), size)
    try:
        if not writer.isOpened():
            raise HRankError(f"cannot write video {out_path} (OpenCV's VideoWriter with {FOURCC} did not "
                             f"open): use an .mp4 or .avi name in a writable folder")
        yield lambda frame: writer.write(frame if (frame.shape[1], frame.shape[0]) == size
                                         else cv2.resize(frame, size))
        writer.release()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise HRankError(f"writing {out_path} failed (no data written): check free disk space")
        os.replace(tmp, out_path)
    finally:
        writer.release()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def process_video(predictor, class_names: Sequence[str], in_path: PathLike, out_path: PathLike,
                  threshold: float = 0.4, top_k: int = 10, max_frames: Optional[int] = None,
                  progress: bool = True) -> Dict[str, object]:
    """Detect on every frame of ``in_path`` and write the annotated video: ``{frames, fps_in, avg_fps, out_path}``."""
    if (max_frames is not None and max_frames < 1) or not 0.0 <= threshold <= 1.0:
        raise HRankError(f"--max_frames must be at least 1 and --threshold in [0, 1]: got {max_frames}, {threshold}")
    cap, fps_in, count, frame = open_video(in_path)
    total = min(count, max_frames) if count and max_frames else (count or max_frames or None)
    recent, predict_time, frames = deque(maxlen=FPS_WINDOW), 0.0, 0
    try:
        with _atomic_video_writer(out_path, fps_in, (frame.shape[1], frame.shape[0])) as write, \
                tqdm(total=total, unit="frame", desc="video", disable=not progress, leave=False) as bar:
            while frame is not None and (max_frames is None or frames < max_frames):
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                t0 = time.perf_counter()
                boxes, labels, scores = predictor.predict(rgb, top_k, threshold)
                recent.append(time.perf_counter() - t0)
                predict_time += recent[-1]
                running = len(recent) / max(sum(recent), 1e-9)
                write(annotate_frame(frame, boxes, labels, scores, class_names, fps=running))
                frames += 1
                bar.update(1)
                ok, frame = cap.read()
                frame = frame if ok else None
    finally:
        cap.release()
    return {"frames": frames, "fps_in": fps_in, "avg_fps": frames / max(predict_time, 1e-9),
            "out_path": str(Path(out_path))}


def video_info(path: PathLike) -> Dict[str, float]:
    """``{"frames", "fps", "width", "height"}`` of a video, frames counted by decoding every frame."""
    (cap, fps, _, frame), n = open_video(path), 1
    while cap.grab():
        n += 1
    cap.release()
    return {"frames": n, "fps": fps, "width": frame.shape[1], "height": frame.shape[0]}


def sample_frames(out_path: PathLike, n: int = 3) -> List[np.ndarray]:
    """``n`` evenly spaced frames (first and last included) of a video, as RGB arrays (for notebooks)."""
    total = video_info(out_path)["frames"]  # counted by decoding: CAP_PROP_FRAME_COUNT can be wrong
    wanted = set(np.linspace(0, total - 1, num=min(n, total)).round().astype(int).tolist())
    cap, _, _, frame = open_video(out_path)
    frames = [frame]  # wanted holds 0
    for i in range(1, total):
        if not cap.grab():
            break
        if i in wanted:
            ok, f = cap.retrieve()
            if ok:
                frames.append(f)
    cap.release()
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]


def make_synthetic_video(out_path: PathLike, dataset_root: PathLike, seconds: float = 3, fps: float = 10,
                         size: Tuple[int, int] = (480, 360)) -> Path:
    """A clip panning a ``size`` window across the images of the VOC folder ``dataset_root``."""
    n_frames, (w, h) = int(round(seconds * fps)), size
    if n_frames < 1:
        raise HRankError(f"seconds * fps must give at least one frame (seconds={seconds}, fps={fps})")
    root = Path(dataset_root)
    ds = VOCDataset(root, split="test" if (root / "ImageSets" / "Main" / "test.txt").is_file() else "trainval")
    step = 0.5 * h / fps  # pixels per frame
    strip_w = int(math.ceil(w + step * (n_frames - 1))) + 1
    tiles, width = [], 0
    while width < strip_w:
        img = cv2.cvtColor(ds.get_image(len(tiles) % len(ds)), cv2.COLOR_RGB2BGR)
        tiles.append(cv2.resize(img, (max(1, int(round(img.shape[1] * h / img.shape[0]))), h),
                                interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR))
        width += tiles[-1].shape[1]
    strip = np.hstack(tiles)
    with _atomic_video_writer(out_path, fps, (w, h)) as write:
        for k in range(n_frames):
            x = step * k
            x0 = int(math.floor(x))  # and a sub-pixel shift: a slow pan stays smooth
            m = np.float32([[1, 0, -(x - x0)], [0, 1, 0]])
            write(cv2.warpAffine(strip[:, x0:x0 + w + 1], m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return Path(out_path)
