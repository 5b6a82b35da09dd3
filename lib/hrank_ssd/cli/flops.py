"""``flops``: parameters and MACs of a (pruned) detector, exact per layer or as the original project printed them."""

from __future__ import annotations

import argparse

from hrank_ssd.cli.args import add_compress_rate, add_net, compress_rate_of


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("flops", help="parameters and MACs per layer (exact, thop-checked) or the original's table",
                       description=__doc__.splitlines()[0])
    add_net(p)
    add_compress_rate(p)
    p.add_argument("--style", default="exact", choices=("exact", "published"),
                   help="exact: every layer of the whole detector, analytic count checked against thop; "
                        "published: the original HRank-SSD table, same rules and digits, with why it differs")
    p.add_argument("--num_classes", type=int, default=21, help="classes incl. BACKGROUND (sizes the heads)")
    p.add_argument("--image_size", type=int, default=None,
                   help="input side in pixels (default 300; published style for mb1-ssd: 256, the original's size)")
    p.add_argument("--csv", metavar="OUT", default=None, help="also write the per-layer table to this CSV file")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import pandas as pd

    from hrank_ssd.io.files import atomic_write_text
    from hrank_ssd.measure import flops, published_flops
    from hrank_ssd.nets import models

    rates = compress_rate_of(args)
    if args.style == "published":
        res = published_flops.print_published_table(args.net, rates, num_classes=args.num_classes,
                                                    image_size=args.image_size)
        table = res.frame()
    else:
        model = flops.build_for_counting(args.net, args.num_classes, compress_rate=rates,
                                        image_size=args.image_size)
        table = flops.compare_with_thop(model)
        agree = flops.thop_agreement(model, table=table)
        tot = flops.totals(table)
        show = table.assign(out=table["out_h"].astype(str) + "x" + table["out_w"].astype(str))
        cols = ["label", "type", "in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "out",
                "params", "MACs", "thop_ops"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(show[cols].to_string(index=False))
        print()
        print(f"{args.net} compress_rate={args.compress_rate or 'none'} "
              f"{table.attrs['image_size']}x{table.attrs['image_size']}, {args.num_classes} classes")
        print(f"Params: {tot['params']}   (sum of p.numel(): {models.count_parameters(model)})")
        print(f"MACs:   {tot['MACs']}   ({tot['MACs'] / 1e9:.3f} GMACs; FLOPs ~= 2 x MACs = {2 * tot['MACs']})")
        parts = ", ".join(f"{p} {tot[f'{p}_MACs']}" for p in table["part"].unique())
        print(f"MACs by part: {parts}")
        bn_factor = agree["thop_bn_ops_per_element"]
        print(f"thop.profile: {agree['thop_total']} ops, {agree['thop_params']} params. Conv/Linear MACs "
              f"{'agree exactly' if agree['conv_linear_equal'] else 'DIFFER'} ({agree['analytic_conv_linear_MACs']}"
              f" vs {agree['thop_conv_linear_ops']}); BatchNorm: {agree['bn_elements']} elements, counted here as "
              f"1 MAC each, by thop as {bn_factor if bn_factor is None else f'{bn_factor:g}'} ops each; "
              f"other thop ops: {agree['thop_other_ops']}.")
        print(flops.MAC_NOTE)
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
        print(f"wrote {args.csv}")
    return 0
