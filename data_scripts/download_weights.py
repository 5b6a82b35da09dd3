"""Download the pretrained checkpoints, labels and ranks: same as ``python -m hrank_ssd download``.

    python data_scripts/download_weights.py                 # all weights + labels into ./models
    python data_scripts/download_weights.py vgg16-ssd-ranks --record
    python data_scripts/download_weights.py --list
"""

import sys
from pathlib import Path

try:
    from hrank_ssd.cli import main
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
    from hrank_ssd.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
