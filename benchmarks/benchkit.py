"""What the benchmark scripts share: the command and machine a page names, and the CLI's way of ending."""

import shlex
import sys

from hrank_ssd.cli.main import guarded
from hrank_ssd.measure.bench import cpu_flags, environment


def command(script: str, argv=None) -> str:
    """The command line that made a page: ``python benchmarks/SCRIPT ARGS``."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def machine(threads=None) -> str:
    """``CPU (AVX-512), N threads, torch X, DATE``."""
    env, flags = environment("cpu", threads), cpu_flags()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2 seen"
    threads = f"{env['threads']} thread" + "s" * (env["threads"] != 1)
    return f"{env['cpu']} ({simd}), {threads}, torch {env['torch']}, {env['date'][:10]}"


def log(message: str) -> None:
    """A progress line on stderr (the page goes to stdout or its file)."""
    print(message, file=sys.stderr, flush=True)


def run(main) -> None:
    """End like the CLI: bad input is one line on stderr and exit status 2, no traceback."""
    sys.exit(guarded(main))
