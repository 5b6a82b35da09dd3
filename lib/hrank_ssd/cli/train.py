"""``train``: train or finetune an SSD (optionally prune it first), resumable, with logs and curves."""

from __future__ import annotations

import argparse

from hrank_ssd.cli.args import add_net, compress_rate_of, device_arg
from hrank_ssd.train.config import CHOICES, TrainConfig
from hrank_ssd.train.trainer import train


def add_parser(sub) -> None:
    """The ``train`` command's flags (pytorch-ssd's train_ssd.py names, :class:`TrainConfig` defaults)."""
    p = sub.add_parser("train", help="train/finetune an SSD on VOC-format data (prune first with --compress_rate)",
                       description=__doc__)
    d = TrainConfig()
    _model_and_optimiser_flags(p, d)
    _run_flags(p, d)
    p.set_defaults(func=run)


def _model_and_optimiser_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument("--datasets", nargs="+", required=True, help="VOCdevkit/VOC20xx training folders")
    p.add_argument("--validation_dataset", required=True, help="VOC folder for validation loss and mAP")
    p.add_argument("--label_file", default=None, help="class names, BACKGROUND first (default: the dataset's)")
    add_net(p)
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
    p.add_argument("--optimizer", choices=CHOICES["optimizer"], default=d.optimizer,
                   help="sgd as the original; adam trains small from-scratch models faster")
    p.add_argument("--augment", choices=CHOICES["augment"], default=d.augment,
                   help="ssd: photometric, expand, IoU crop, flip; light: photometric and flip only")
    p.add_argument("--init", choices=CHOICES["init"], default=d.init,
                   help="weights of a model trained from scratch: PyTorch's default, or LSUV with unit activations "
                        "(trains small course models much faster, best with --optimizer adam)")


def _run_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument("--num_workers", type=int, default=d.num_workers)
    p.add_argument("--width", type=float, default=d.width, help="channel multiplier for a model built from scratch")
    p.add_argument("--image_size", type=int, default=None)
    p.add_argument("--train_split", default=None, help="ImageSets/Main split (default trainval)")
    p.add_argument("--validation_split", default=None, help="ImageSets/Main split (default test)")
    p.add_argument("--max_images", type=int, default=None,
                   help="train and validate on the first N images of each set only (quick trials)")
    p.add_argument("--keep_difficult", action="store_true")
    p.add_argument("--seed", type=int, default=None, help="makes the run repeatable (stored for --resume)")
    device_arg(p)
    p.add_argument("--validation_epochs", type=int, default=d.validation_epochs, help="mAP every N epochs; 0: never")
    p.add_argument("--checkpoint_every_steps", type=int, default=0, help="also checkpoint every N steps mid-epoch")
    p.add_argument("--resume", default=None, help="model_best.pth-N.tar to continue from, or auto (newest)")
    p.add_argument("--rank_dir", default=None, help="rank files for --criterion hrank")
    p.add_argument("--compress_rate", default=None, help='prune --base_net first, e.g. "[0.1]*7+[0.5]*9"')
    p.add_argument("--criterion", choices=CHOICES["criterion"], default=d.criterion)
    p.add_argument("--round_to", type=int, default=None, help="round kept filter counts to a multiple of N")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--channels_last", action="store_true",
                   help="train in the channels-last memory layout (faster VGG16-SSD steps on CPU; same files)")
    p.add_argument("--grad_clip", type=float, default=None, help="clip the gradient norm to MAX_NORM")
    p.add_argument("--bn_eval", action="store_true", help="freeze BatchNorm statistics (eval mode) while training")
    p.add_argument("--distill_from", default=None, help="teacher checkpoint (the unpruned model)")
    p.add_argument("--distill_alpha", type=float, default=d.distill_alpha)
    p.add_argument("--distill_T", type=float, default=d.distill_T)
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no tqdm bars")


def run(args: argparse.Namespace) -> int:
    """Parse ``--compress_rate`` (here, at the edge), train, and print the final model's path."""
    args.compress_rate = compress_rate_of(args)
    result = train(TrainConfig.from_namespace(args))
    if result.final_model is not None:
        print(result.final_model)
    return 0
