"""``sensitivity``: prune one layer at a time, evaluate without finetuning, plot, suggest a compress rate."""

from __future__ import annotations

from pathlib import Path

from hrank_ssd.cli.args import add_net, device_arg
from hrank_ssd.devices import resolve_device


def add_parser(sub) -> None:
    p = sub.add_parser("sensitivity", help="per-layer pruning sensitivity scan (mAP vs rate) and rate suggestion")
    p.add_argument("--dataset", required=True, help="VOC root to evaluate on")
    p.add_argument("--trained_model", "--base_net", dest="trained_model", required=True, help="detector (.pth)")
    add_net(p, default=None)
    p.add_argument("--label_file", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--criterion", default="hrank", choices=("hrank", "l1", "random"))
    p.add_argument("--rank_dir", default=None, help="rank_conv{i}.npy folder (for --criterion hrank)")
    p.add_argument("--rates", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    p.add_argument("--layers", default=None, help="1-based prunable layers to scan, e.g. 1,5,14 (default all)")
    p.add_argument("--limit_images", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--target_mac_reduction", type=float, default=None,
                   help="suggest a compress rate removing this fraction of MACs (e.g. 0.5)")
    p.add_argument("--output_dir", default="sensitivity", help="writes sensitivity.csv and sensitivity.png")
    device_arg(p)
    p.set_defaults(func=run)


def _floats(text: str, what: str):
    from hrank_ssd.errors import HRankError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HRankError(f"--{what} must be comma-separated numbers, got {text!r}") from None


def run(args) -> int:
    from hrank_ssd.data.voc import VOCDataset, read_labels
    from hrank_ssd.errors import HRankError
    from hrank_ssd.io.files import atomic_savefig, atomic_write_text
    from hrank_ssd.measure.sensitivity import layer_sensitivity, plot_sensitivity, suggest_compress_rate
    from hrank_ssd.nets.models import load_model

    rates = _floats(args.rates, "rates")
    if any(not 0 < r < 1 for r in rates):
        raise HRankError("--rates must lie in (0, 1)")
    class_names = read_labels(args.label_file) if args.label_file else None
    dataset = VOCDataset(args.dataset, split=args.split, is_test=True, class_names=class_names)
    if args.limit_images:
        dataset.ids = dataset.ids[: args.limit_images]
    model = load_model(args.trained_model, net=args.net, num_classes=len(dataset.class_names))
    layers = [int(v) for v in _floats(args.layers, "layers")] if args.layers else None
    table = layer_sensitivity(model, dataset, args.criterion, args.rank_dir, rates, layers,
                              device=resolve_device(args.device))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sensitivity.csv", table.to_csv(index=False))
    atomic_savefig(plot_sensitivity(table), out / "sensitivity.png", dpi=110)
    print(table.pivot(index="rate", columns="name", values="map").round(4).to_string())
    print(f"wrote {out / 'sensitivity.csv'} and {out / 'sensitivity.png'}")
    if args.target_mac_reduction:
        s = suggest_compress_rate(table, model, args.target_mac_reduction, rates)
        print(f"suggested --compress_rate \"{s['compress_rate']}\": removes {s['mac_reduction']:.1%} of the MACs, "
              f"each layer losing at most {s['tolerated_drop']:.4f} scan mAP on its own")
    return 0
