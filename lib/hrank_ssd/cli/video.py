"""video: run a detector on every frame of a video and write the annotated video (run_ssd_video_demo.py)."""

from __future__ import annotations

import argparse
import re

from hrank_ssd.cli.args import device_arg
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.registry import net_names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("video", help="annotated video: boxes, labels, scores, FPS (run_ssd_video_demo.py)",
                       description=__doc__.splitlines()[0])
    p.add_argument("net_type", choices=net_names(), help="network architecture (checked against the checkpoint)")
    p.add_argument("model_path", help="checkpoint (.pth)")
    p.add_argument("label_path", help="class names, one per line, BACKGROUND first")
    p.add_argument("in_video", help="input video (anything OpenCV can decode, e.g. .mp4, .avi)")
    p.add_argument("out_video", help="output video (.mp4 or .avi; mp4v codec, same fps and frame count)")
    p.add_argument("--threshold", type=float, default=0.4, help="keep detections scoring above this")
    p.add_argument("--top_k", type=int, default=10, help="at most this many boxes per class and frame")
    device_arg(p)
    p.add_argument("--max_frames", type=int, default=None, help="stop after this many frames (quick look)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from hrank_ssd.course import video
    from hrank_ssd.data import voc as data
    from hrank_ssd.nets import models
    from hrank_ssd.nets.predictor import Predictor

    class_names = data.read_labels(args.label_path)
    try:
        model = models.load_model(args.model_path, net=args.net_type, num_classes=len(class_names))
    except HRankError as e:  # the net type is positional here, not --net
        raise HRankError(re.sub(r"pass --net (\S+)", r"pass \1 as the net type", str(e))) from None
    predictor = Predictor(model, resolve_device(args.device))
    info = video.process_video(predictor, class_names, args.in_video, args.out_video,
                               threshold=args.threshold, top_k=args.top_k, max_frames=args.max_frames,
                               progress=not args.no_progress)
    print(f"wrote {info['out_path']}: {info['frames']} frames at {info['fps_in']:g} fps; "
          f"detector speed {info['avg_fps']:.1f} frames/s")
    return 0
