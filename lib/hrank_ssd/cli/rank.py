"""``rank``: HRank feature-map ranks of every prunable layer (the original HR_rank_generation.py)."""

from __future__ import annotations

from hrank_ssd.cli.args import add_net, device_arg
from hrank_ssd.devices import resolve_device


def add_parser(sub) -> None:
    p = sub.add_parser("rank", help="compute HRank feature-map ranks (rank_conv{i}.npy)")
    p.add_argument("--dataset", required=True, help="VOC root (VOCdevkit/VOC2007 layout)")
    p.add_argument("--base_net", required=True, help="trained detector checkpoint (.pth)")
    add_net(p)
    p.add_argument("--label_file", default=None, help="labels file, BACKGROUND first (checks the class count)")
    p.add_argument("--split", default="trainval", help="ImageSets/Main split to read images from")
    p.add_argument("--limit", type=int, default=5, help="number of batches to average over")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--rank_dir", default="rank_conv/vgg-16-limitbatch5", help="output folder")
    p.add_argument("--shuffle", action="store_true", help="sample images instead of taking them in order")
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from hrank_ssd.data.voc import TestTransform, VOCDataset, read_labels
    from hrank_ssd.errors import HRankError
    from hrank_ssd.hrank.ranks import compute_ranks, image_batches, rank_summary, save_ranks
    from hrank_ssd.nets.models import load_model

    if args.limit < 1 or args.batch_size < 1:
        raise HRankError("--limit and --batch_size must be at least 1")
    num_classes = len(read_labels(args.label_file)) if args.label_file else None
    model = load_model(args.base_net, net=args.net, num_classes=num_classes)
    cfg = model.cfg
    dataset = VOCDataset(args.dataset, split=args.split,
                         transform=TestTransform(model.image_size, cfg.image_mean, cfg.image_std))
    batches = image_batches(dataset, args.batch_size, args.limit, args.shuffle, args.seed)
    total = min(args.limit, -(-len(dataset) // args.batch_size))
    ranks = compute_ranks(model, batches, device=resolve_device(args.device), total=total)
    paths = save_ranks(ranks, args.rank_dir)
    for row in rank_summary(ranks, model.cfg.name):
        print(f"rank_conv{row['layer']:<2} {row['name']:<9} filters {row['filters']:>5}  "
              f"rank min {row['min']:8.2f} mean {row['mean']:8.2f} max {row['max']:8.2f}")
    print(f"wrote {len(paths)} rank files to {args.rank_dir}")
    return 0
