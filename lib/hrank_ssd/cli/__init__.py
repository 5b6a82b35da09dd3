"""The command line: one module per sub-command; flags are parsed here and handed to the library."""

from hrank_ssd.cli.main import main

__all__ = ["main"]
