"""One Jupyter kernel shared by several notebooks (``execute_notebooks(..., shared=SharedKernel(...))``): the tests
run the course without starting a kernel per notebook; each notebook's copy opens with a reset of every name."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync


class SharedKernel:
    """A kernel manager papermill reuses across notebooks (started by the first, in its cwd); a context manager."""

    def __init__(self, inputs: Path, kernel_name: str = "python3"):
        self.km = AsyncKernelManager(kernel_name=kernel_name)
        self.inputs = Path(inputs)  # where the reset-first copies are written, removed on close

    def input_copy(self, path: Path) -> Path:
        nb = nbformat.read(str(path), as_version=4)
        reset = nbformat.v4.new_code_cell("%reset_selective -f .", metadata={"tags": ["shared-kernel-reset"]})
        nb.cells.insert(0, reset)
        self.inputs.mkdir(parents=True, exist_ok=True)
        copy = self.inputs / path.name
        nbformat.write(nb, str(copy))
        return copy

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.km.has_kernel:
            run_sync(self.km.shutdown_kernel)(now=True)
        shutil.rmtree(self.inputs, ignore_errors=True)
