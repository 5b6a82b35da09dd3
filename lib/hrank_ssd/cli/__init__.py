"""The command line: the commands grouped by the scripts they stand for; flags are parsed here, then handed on."""

from hrank_ssd.cli.main import main as main
