"""Where a video frame's time goes, and which part of it the demo's FPS overlay (``Predictor.predict`` alone) counts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, Sequence

import cv2
import pandas as pd
import torch

from hrank_ssd.course.video import FOURCC, annotate_frame, open_video
from hrank_ssd.devices import evaluating
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.bench import clocked
from hrank_ssd.nets.predictor import postprocess

STAGES = ("decode", "BGR to RGB", "preprocess", "forward", "postprocess (decode boxes, NMS)", "draw", "encode")
IN_OVERLAY = ("preprocess", "forward", "postprocess (decode boxes, NMS)")  # what Predictor.predict does


def _one_frame(predictor, frame, class_names, writer, threshold: float, top_k: int) -> Dict[str, float]:
    """Seconds of every stage after decoding for one BGR frame (the demo's steps, split apart)."""
    dev, model, t = predictor.device, predictor.model, {}
    rgb, t["BGR to RGB"] = clocked(lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dev)
    batch, t["preprocess"] = clocked(lambda: predictor.preprocess([rgb]), dev)
    with torch.no_grad(), evaluating(model):
        (conf, loc), t["forward"] = clocked(lambda: model(batch), dev)

    def post():
        dets = postprocess(conf.cpu(), loc.cpu(), model.priors.cpu(), predictor.cfg, threshold,
                           predictor.iou_threshold, predictor.candidate_size, top_k)[0]
        h, w = rgb.shape[:2]
        return dets[0] * torch.tensor([w, h, w, h], dtype=dets[0].dtype), dets[1], dets[2]

    (boxes, labels, scores), t["postprocess (decode boxes, NMS)"] = clocked(post, dev)
    drawn, t["draw"] = clocked(lambda: annotate_frame(frame, boxes, labels, scores, class_names, fps=0.0), dev)
    _, t["encode"] = clocked(lambda: writer.write(drawn), dev)
    return t


def frame_stage_times(predictor, class_names: Sequence[str], clip, frames: int = 20, warmup: int = 2,
                      threshold: float = 0.4, top_k: int = 10) -> pd.DataFrame:
    """Median ms per frame of every stage of the video demo (:data:`STAGES`) over ``frames`` frames of ``clip``."""
    cap, fps, _, frame = open_video(clip)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = cv2.VideoWriter(str(Path(tmp) / "stages.mp4"), cv2.VideoWriter_fourcc(*FOURCC), fps,
                                 (frame.shape[1], frame.shape[0]))
        for i in range(warmup + frames):
            stage = {}
            if i:
                (ok, frame), stage["decode"] = clocked(cap.read, "cpu")
                if not ok:
                    break
            rows.append(dict(stage, **_one_frame(predictor, frame, class_names, writer, threshold, top_k)))
        writer.release()
    cap.release()
    timed = pd.DataFrame(rows[warmup:], columns=list(STAGES))
    if timed.empty:
        raise HRankError(f"{clip} has only {warmup} frame(s) or fewer: nothing left to time after the warm-up")
    medians = 1000 * timed.median().fillna(0.0)  # the first frame has no decode step of its own
    return pd.DataFrame({"stage": list(STAGES), "median_ms": medians.values, "share": (medians / medians.sum()).values,
                         "in_fps_overlay": [s in IN_OVERLAY for s in STAGES], "frames": len(timed)})


def overlay_and_loop_fps(table: pd.DataFrame) -> Dict[str, float]:
    """From :func:`frame_stage_times`: the FPS the overlay shows (its stages only) and the whole loop's FPS."""
    overlay = table.loc[table["in_fps_overlay"], "median_ms"].sum()
    return {"overlay_fps": float(1000 / overlay), "loop_fps": float(1000 / table["median_ms"].sum())}
