"""``prune``: keep the best filters of every prunable layer and rebuild a smaller model."""

from __future__ import annotations

from hrank_ssd.cli.args import add_compress_rate, add_net, compress_rate_of


def add_parser(sub) -> None:
    p = sub.add_parser("prune", help="prune a detector (hrank, l1 or random filter selection)")
    add_net(p)
    p.add_argument("--base_net", required=True, help="detector checkpoint to prune (.pth)")
    p.add_argument("--rank_dir", default=None, help="folder of rank_conv{i}.npy (needed by --criterion hrank)")
    add_compress_rate(p)
    p.add_argument("--criterion", default="hrank", choices=("hrank", "l1", "random"))
    p.add_argument("--seed", type=int, default=0, help="seed of --criterion random")
    p.add_argument("--round_to", type=int, default=None, help="round kept filter counts up to a multiple of N")
    p.add_argument("--output", required=True, help="pruned state dict (.pth); a .json with kept indices is written beside it")
    p.set_defaults(func=run)


def run(args) -> int:
    from hrank_ssd.errors import HRankError
    from hrank_ssd.hrank.pruning import describe_surgery, prune_model, save_pruned
    from hrank_ssd.nets.models import count_parameters, load_model

    rates = compress_rate_of(args)
    if rates is None:
        raise HRankError('prune needs --compress_rate, e.g. "[0.1]*7+[0.5]*9"')
    model = load_model(args.base_net, net=args.net)
    pruned, kept = prune_model(model, rates, args.criterion, args.rank_dir, args.seed, args.round_to)
    save_pruned(pruned, args.output, rates, args.criterion, kept)
    for row in describe_surgery(model, pruned):
        if row["parameter"].endswith("weight"):
            print(f"{row['parameter']:<34} {str(row['before']):>22} -> {row['after']}")
    before, after = count_parameters(model), count_parameters(pruned)
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%}); wrote {args.output} and {args.output}.json")
    return 0
