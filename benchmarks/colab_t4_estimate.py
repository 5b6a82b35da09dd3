"""Estimated minutes per notebook on a Colab T4 with the full profile (``hrank_ssd.course.estimates``): computed from
the work each notebook does and stated rates, with the per-image data time measured here.

    python benchmarks/colab_t4_estimate.py [--dataset VOC_ROOT | --assumed_load] [--update_readme]

Writes ``benchmarks/colab_t4_estimate.md``; ``--update_readme`` refreshes README.md's ``t4`` block.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrank_ssd.cli.main import guarded
from hrank_ssd.course import estimates
from hrank_ssd.course.folders import repo_root
from hrank_ssd.course.report import replace_marked_block
from hrank_ssd.measure.tables import markdown_table

HERE = Path(__file__).resolve().parent
SHARED_VOC = repo_root().parent / "shared" / "data" / "voc2012_sample" / "VOC2012"
MARKERS = ("<!-- t4:start -->", "<!-- t4:end -->")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None, help="a VOC folder of real JPEGs to time decoding on "
                                                   "(default: ../shared's VOC2012 sample, else a synthetic set)")
    p.add_argument("--assumed_load", action="store_true",
                   help="decode times: estimates.ASSUMED_LOAD_MS (what the notebooks' cells use), not measured here "
                        "(a busy machine measures its load, not the decoding)")
    p.add_argument("--update_readme", action="store_true")
    args = p.parse_args(argv)
    root = Path(args.dataset) if args.dataset else SHARED_VOC
    if args.assumed_load:
        load_ms, where = dict(estimates.ASSUMED_LOAD_MS), "assumed (estimates.ASSUMED_LOAD_MS, as the notebooks)"
    else:
        if not root.is_dir():
            from hrank_ssd.data.synthetic import make_synthetic_voc

            root = make_synthetic_voc(HERE / ".t4-synthetic", 16, 0, image_size=500, seed=0)
        load_ms = {train: estimates.cpu_ms_per_image(root, train, images=32) for train in (False, True)}
        where = f"as measured on {root.name} here"
    table = estimates.estimate_table(load_ms)
    summary = estimates.per_notebook(table)
    text = (f"Estimated, not measured (no GPU here): minutes per notebook on a Colab T4 with `PROFILE = \"full\"`, "
            f"from `benchmarks/colab_t4_estimate.py`. GPU work at {estimates.INFER_EFFICIENCY:.0%} (predict) and "
            f"{estimates.TRAIN_EFFICIENCY:.0%} (training) of the T4's {estimates.T4_FP32_TFLOPS} FP32 TFLOPS, rank "
            f"SVDs at {estimates.SVD_TFLOPS} TFLOPS, downloads at {estimates.DOWNLOAD_MB_S:.0f} MB/s, decoding "
            f"{load_ms[False]:.1f} ms (test) / {load_ms[True]:.1f} ms (training augmentation) per image {where}, on "
            f"2 loader workers. Expect the real times within about a factor of 2.\n\n"
            + markdown_table(summary, floatfmt=".1f") + "\n")
    detail = markdown_table(table, floatfmt=".2f")
    (HERE / "colab_t4_estimate.md").write_text("# Time on a Colab T4 (estimate)\n\n" + text
                                               + "\nThe work behind each figure:\n\n" + detail + "\n")
    print(text)
    if args.update_readme:
        replace_marked_block(repo_root() / "README.md", *MARKERS, text)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
