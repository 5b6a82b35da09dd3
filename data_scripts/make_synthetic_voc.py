"""Write the synthetic shapes dataset in VOC format (no download needed).

    python data_scripts/make_synthetic_voc.py --out data/synthetic
    # -> data/synthetic/VOCdevkit/VOC2007 (use it as --datasets / --validation_dataset)
"""

from __future__ import annotations

import argparse
import sys
import time

from hrank_ssd.data.synthetic import make_synthetic_voc
from hrank_ssd.errors import HRankError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/synthetic", help="output folder (VOCdevkit/VOC2007 is created inside)")
    p.add_argument("--num_train", type=int, default=600, help="trainval images")
    p.add_argument("--num_test", type=int, default=150, help="test images")
    p.add_argument("--image_size", type=int, default=300, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="same seed -> identical files")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        root = make_synthetic_voc(args.out, num_train=args.num_train, num_test=args.num_test,
                                  image_size=args.image_size, seed=args.seed)
    except HRankError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_train} trainval + {args.num_test} test images to {root} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
