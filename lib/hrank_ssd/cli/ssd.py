"""pytorch-ssd's scripts: ``train`` (train_ssd.py, plus pruning first), ``eval`` (eval_ssd.py), ``video``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hrank_ssd.cli.main import command, str2bool
from hrank_ssd.course import video
from hrank_ssd.data import voc
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.measure import evaluation
from hrank_ssd.nets import models
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.nets.registry import net_names
from hrank_ssd.train.config import CHOICES, TrainConfig
from hrank_ssd.train.trainer import train


def add_parser(sub) -> None:
    p = command(sub, "train", run_train, "train/finetune an SSD on VOC data (prune first: --compress_rate)",
                "--net", "--device", "--label_file", "--width", "--image_size", "--compress_rate",
                "--rank_dir", "--criterion", "--round_to", "--amp", "--channels_last", "--no_progress")
    _train_flags(p)
    p = command(sub, "eval", run_eval, "VOC mAP and per-class AP (pytorch-ssd eval_ssd.py)",
                "--dataset", "--label_file", "--compress_rate", "--device", "--no_progress")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trained_model", metavar="PTH", help="checkpoint to evaluate")
    src.add_argument("--detections", metavar="DIR", help="evaluate DIR's det_test_<class>.txt files instead")
    p.add_argument("--net", default=None, choices=net_names(), help="architecture check (default: the checkpoint's)")
    p.add_argument("--eval_dir", default="eval_results", help="where det files and ap.csv are written")
    p.add_argument("--iou_threshold", type=float, default=0.5, help="a match needs IoU strictly above this")
    p.add_argument("--use_2007_metric", type=str2bool, default=True, help="true: 11-point AP; false: area under curve")
    p.add_argument("--split", default="test", help="ImageSets/Main/<split>.txt to evaluate")
    p.add_argument("--nms_method", default="hard", choices=["hard"], help="accepted for compatibility (hard NMS)")
    p.add_argument("--mb2_width_mult", type=float, default=1.0, help="accepted for compatibility; ignored")
    p = command(sub, "video", run_video, "video with boxes, labels, scores, FPS (run_ssd_video_demo.py)",
                "--device", "--no_progress")
    p.add_argument("net_type", choices=net_names(), help="network architecture (checked against the checkpoint)")
    p.add_argument("model_path", help="checkpoint (.pth)")
    p.add_argument("label_path", help="class names, one per line, BACKGROUND first")
    p.add_argument("in_video", help="input video (anything OpenCV can decode, e.g. .mp4, .avi)")
    p.add_argument("out_video", help="output video (.mp4 or .avi; mp4v codec, same fps and frame count)")
    p.add_argument("--threshold", type=float, default=0.4, help="keep detections scoring above this")
    p.add_argument("--top_k", type=int, default=10, help="at most this many boxes per class and frame")
    p.add_argument("--max_frames", type=int, default=None, help="stop after this many frames (quick look)")


def _train_flags(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()  # the flags' defaults
    p.add_argument("--datasets", nargs="+", required=True, help="VOCdevkit/VOC20xx training folders")
    p.add_argument("--validation_dataset", required=True, help="VOC folder for validation loss and mAP")
    p.add_argument("--base_net", default=None, help="initial weights: a full SSD checkpoint or a bare backbone")
    p.add_argument("--freeze_base_net", action="store_true", help="train only add-ons, extras and headers")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="per-process batch size")
    p.add_argument("--num_epochs", type=int, default=d.num_epochs)
    p.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--gamma", type=float, default=d.gamma, help="multistep decay factor")
    p.add_argument("--scheduler", choices=CHOICES["scheduler"], default=d.scheduler)
    p.add_argument("--milestones", default=d.milestones, help="multistep epochs, e.g. 80,100")
    p.add_argument("--t_max", type=float, default=None, help="cosine period in epochs (default --num_epochs)")
    p.add_argument("--checkpoint_folder", default=d.checkpoint_folder)
    p.add_argument("--optimizer", choices=CHOICES["optimizer"], default=d.optimizer, help="adam: small models, faster")
    p.add_argument("--augment", choices=CHOICES["augment"], default=d.augment, help="light: photometric and flip only")
    p.add_argument("--init", choices=CHOICES["init"], default=d.init, help="lsuv: small models train faster")
    p.add_argument("--num_workers", type=int, default=d.num_workers)
    p.add_argument("--train_split", default=None, help="ImageSets/Main split (default trainval)")
    p.add_argument("--validation_split", default=None, help="ImageSets/Main split (default test)")
    p.add_argument("--max_images", type=int, default=None, help="use the first N images of each set (quick trials)")
    p.add_argument("--keep_difficult", action="store_true")
    p.add_argument("--seed", type=int, default=None, help="makes the run repeatable (stored for --resume)")
    p.add_argument("--validation_epochs", type=int, default=d.validation_epochs, help="mAP every N epochs; 0: never")
    p.add_argument("--checkpoint_every_steps", type=int, default=0, help="also checkpoint every N steps mid-epoch")
    p.add_argument("--resume", default=None, help="model_best.pth-N.tar to continue from, or auto (newest)")
    p.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm to MAX_NORM")
    p.add_argument("--bn_eval", action="store_true", help="freeze BatchNorm statistics (eval mode) while training")
    p.add_argument("--distill_from", default=None, help="teacher checkpoint (the unpruned model)")
    p.add_argument("--distill_alpha", type=float, default=d.distill_alpha)
    p.add_argument("--distill_T", type=float, default=d.distill_T)


def run_train(args: argparse.Namespace) -> int:
    """Train or finetune an SSD (optionally prune it first), resumable, with logs and curves."""
    result = train(TrainConfig.from_namespace(args))
    if result.final_model is not None:
        print(result.final_model)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Per-class AP and mAP of a checkpoint (or of existing detection files) on a VOC set."""
    class_names = voc.read_labels(args.label_file) if args.label_file else None  # both raise clear errors
    dataset = voc.VOCDataset(args.dataset, split=args.split, is_test=True, class_names=class_names)
    class_names = list(dataset.class_names)
    eval_dir = Path(args.eval_dir)
    if args.detections:
        table = evaluation.evaluate_detections(dataset, args.detections, class_names, args.iou_threshold,
                                               args.use_2007_metric)
        evaluation.save_table(table, eval_dir / "ap.csv")
        avg_time = None
    else:
        model = models.load_model(args.trained_model, net=args.net, num_classes=len(class_names),
                                  compress_rate=args.compress_rate)
        table, avg_time = evaluation.evaluate_model(model, dataset, eval_dir, resolve_device(args.device),
                                                    class_names=class_names, iou_threshold=args.iou_threshold,
                                                    use_2007_metric=args.use_2007_metric,
                                                    progress=args.progress)
    print(evaluation.format_report(table, avg_time))
    return 0


def run_video(args: argparse.Namespace) -> int:
    """Run a detector on every frame of a video and write the annotated video (run_ssd_video_demo.py)."""
    class_names = voc.read_labels(args.label_path)
    try:
        model = models.load_model(args.model_path, net=args.net_type, num_classes=len(class_names))
    except HRankError as e:  # the net type is positional here, not --net
        raise HRankError(re.sub(r"pass --net (\S+)", r"pass \1 as the net type", str(e))) from None
    predictor = Predictor(model, resolve_device(args.device))
    info = video.process_video(predictor, class_names, args.in_video, args.out_video, threshold=args.threshold,
                               top_k=args.top_k, max_frames=args.max_frames, progress=args.progress)
    print(f"wrote {info['out_path']}: {info['frames']} frames at {info['fps_in']:g} fps; "
          f"detector speed {info['avg_fps']:.1f} frames/s")
    return 0
