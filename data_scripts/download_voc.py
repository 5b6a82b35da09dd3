"""Download PASCAL VOC 2007 trainval/test and 2012 trainval (md5-checked, resumable, mirrors in order).

    python data_scripts/download_voc.py --dest data
    python data_scripts/download_voc.py --sets 2007-test --mirror http://my.mirror/voc/
    python data_scripts/download_voc.py --voc_source /content/drive/MyDrive/VOC   # your own tars or VOCdevkit

Result: DEST/VOCdevkit/VOC2007, DEST/VOCdevkit/VOC2007-test (the original project's layout; pass
``--test_dir VOC2007`` to merge the test set into VOC2007 instead) and DEST/VOCdevkit/VOC2012.
"""

import argparse
import sys
from pathlib import Path

try:
    from hrank_ssd.errors import HRankError
    from hrank_ssd.io import voc_download
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
    from hrank_ssd.errors import HRankError
    from hrank_ssd.io import voc_download


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", default="data", help="folder that receives the tars and VOCdevkit/ (default: data)")
    p.add_argument("--sets", default="2007-trainval,2007-test,2012-trainval",
                   help=f"comma-separated, among {','.join(voc_download.VOC_SETS)}")
    p.add_argument("--mirror", action="append", default=[],
                   help="a mirror tried before the manifest's (docs/downloads.md lists them): a folder URL "
                        "the tar name is appended to, or a template with {tar} and {year}; repeatable")
    p.add_argument("--voc_source", default=None,
                   help="a folder holding your own VOC tars (md5-checked) or an extracted VOCdevkit, used before any "
                        f"mirror (default: ${voc_download.VOC_SOURCE_ENV})")
    p.add_argument("--test_dir", default="VOC2007-test",
                   help="VOCdevkit folder for the 2007 test set (VOC2007 merges it with trainval)")
    p.add_argument("--delete_tars", action="store_true", help="remove each tar once extracted")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        devkit = voc_download.download_voc(args.dest, sets=sets, mirrors=args.mirror,
                                           test_dir=args.test_dir, keep_tars=not args.delete_tars,
                                           progress=not args.quiet, source=args.voc_source)
    except HRankError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(devkit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
