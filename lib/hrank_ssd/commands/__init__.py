"""CLI sub-commands: one module each, discovered by :mod:`hrank_ssd.cli`."""
