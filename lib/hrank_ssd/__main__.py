import sys

from hrank_ssd.cli.main import main

sys.exit(main())
