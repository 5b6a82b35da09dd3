"""eval: per-class AP and mAP of a checkpoint (or of existing detection files) on a VOC set."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrank_ssd.cli.args import add_compress_rate, compress_rate_of, device_arg, str2bool
from hrank_ssd.devices import resolve_device
from hrank_ssd.nets.registry import net_names


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="VOC mAP and per-class AP (pytorch-ssd eval_ssd.py)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="VOC root (holds Annotations/, JPEGImages/, ImageSets/)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trained_model", metavar="PTH", help="checkpoint to evaluate")
    src.add_argument("--detections", metavar="DIR",
                     help="evaluate existing det_test_<class>.txt files in DIR instead of a model")
    p.add_argument("--label_file", default=None,
                   help="class names, BACKGROUND first (default: the dataset's labels.txt, else the VOC classes)")
    p.add_argument("--net", default=None, choices=net_names(),
                   help="architecture check (default: inferred from the checkpoint)")
    add_compress_rate(p)
    p.add_argument("--eval_dir", default="eval_results", help="where det files and ap.csv are written")
    p.add_argument("--iou_threshold", type=float, default=0.5, help="a match needs IoU strictly above this")
    p.add_argument("--use_2007_metric", type=str2bool, default=True,
                   help="true: VOC2007 11-point AP; false: area under the precision envelope")
    p.add_argument("--split", default="test", help="ImageSets/Main/<split>.txt to evaluate")
    device_arg(p)
    p.add_argument("--nms_method", default="hard", choices=["hard"],
                   help="accepted for compatibility with pytorch-ssd; NMS is always hard NMS")
    p.add_argument("--mb2_width_mult", type=float, default=1.0, help="accepted for compatibility; ignored")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from hrank_ssd.data import voc as data
    from hrank_ssd.measure import evaluation
    from hrank_ssd.nets import models

    class_names = data.read_labels(args.label_file) if args.label_file else None  # both raise clear errors
    dataset = data.VOCDataset(args.dataset, split=args.split, is_test=True, class_names=class_names)
    class_names = list(dataset.class_names)
    eval_dir = Path(args.eval_dir)
    if args.detections:
        table = evaluation.evaluate_detections(dataset, args.detections, class_names, args.iou_threshold,
                                               args.use_2007_metric)
        evaluation.save_table(table, eval_dir / "ap.csv")
        avg_time = None
    else:
        device = resolve_device(args.device)
        model = models.load_model(args.trained_model, net=args.net, num_classes=len(class_names),
                                  compress_rate=compress_rate_of(args))
        table, avg_time = evaluation.evaluate_model(model, dataset, eval_dir, device=device,
                                                    class_names=class_names, iou_threshold=args.iou_threshold,
                                                    use_2007_metric=args.use_2007_metric,
                                                    progress=not args.no_progress)
    print(evaluation.format_report(table, avg_time))
    return 0
