"""Build the course notebooks (notebooks/NN_name.ipynb) from their sources (notebooks/NN_name.py).

The sources are the notebooks written as Python, in jupytext's percent format (``# %%`` starts a code cell,
``# %% [markdown]`` a text cell, ``# %% tags=["parameters"]`` papermill's parameters cell); ruff lints them
like the rest of the code. Each is paired with its ``.ipynb`` (``notebooks/jupytext.toml``), so Jupyter with
jupytext opens either file and saves both. The ``.ipynb`` files are what Colab and papermill run; they are
committed without outputs.

Every notebook opens with the same cells: an Open-in-Colab badge on top of its title, a setup cell (Colab:
clone + install; locally: go to the repository root), the ``parameters`` cell and the cell that builds the
:class:`hrank_ssd.course.steps.Course`. Their one copy is ``notebooks/_shared_cells.py``; the build copies it
into every source (each notebook stays standalone: on Colab it runs before the library is installed).

    python notebooks/make_notebooks.py          # refresh the sources' shared cells, write every .ipynb
    python notebooks/make_notebooks.py --check  # exit 1 with one line when a notebook is stale; writes nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SHARED = "_shared_cells.py"
FORMAT = "py:percent"
BADGE_START = "[![Open In Colab]"
METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "colab": {"provenance": [], "toc_visible": True},
    "accelerator": "GPU",
}


class Notebooks:
    """The sources of one notebooks folder, the shared cells, and what the build makes of them."""

    def __init__(self, folder=HERE):
        self.folder = Path(folder)
        self.config = jupytext.config.load_jupytext_configuration_file(str(self.folder / "jupytext.toml"))
        _doc, badge, *shared = self.read(self.folder / SHARED).cells
        if badge.cell_type != "markdown" or [c.cell_type for c in shared] != ["code"] * 3:
            raise SystemExit(f"{SHARED}: expected a note, the badge (markdown) and three code cells")
        self.badge, self.shared = badge.source, shared

    def read(self, path: Path):
        return jupytext.reads(path.read_text(encoding="utf-8"), fmt=FORMAT, config=self.config)

    def names(self) -> list:
        return sorted(p.stem for p in self.folder.glob("[0-9][0-9]_*.py"))

    def with_shared_cells(self, nb, name: str):
        """``nb`` with the canonical first cells: the badge line on top of the title cell, then the shared cells."""
        cells = nb.cells
        if len(cells) < 4 or cells[0].cell_type != "markdown" or any(c.cell_type != "code" for c in cells[1:4]):
            raise SystemExit(f"{name}.py: a notebook starts with its title (markdown), then the three shared code "
                             f"cells of {SHARED}")
        first, _, rest = cells[0].source.partition("\n")
        title = rest.lstrip("\n") if first.startswith(BADGE_START) else cells[0].source
        cells[0] = new_markdown_cell(f"{self.badge.replace('{name}', name)}\n\n{title}")
        cells[1:4] = [new_code_cell(c.source, metadata=dict(c.metadata)) for c in self.shared]
        return nb

    def build(self, name: str) -> tuple:
        """(the source's text, the .ipynb's text) for notebook ``name``."""
        nb = self.with_shared_cells(self.read(self.folder / f"{name}.py"), name)
        source = jupytext.writes(nb, fmt=FORMAT, config=self.config)
        out = new_notebook(metadata=METADATA)
        for i, cell in enumerate(nb.cells):
            new = new_code_cell if cell.cell_type == "code" else new_markdown_cell
            out.cells.append(new(cell.source, metadata=dict(cell.metadata), id=f"{name[:2]}-{i:02d}"))  # stable ids
        nbformat.validate(out)
        return source, nbformat.writes(out) + "\n"

    def stale(self) -> list:
        """What the build would change: 'NAME.py (shared cells)', 'NAME.ipynb', or an .ipynb without a source."""
        names, found = self.names(), []
        for name in names:
            source, ipynb = self.build(name)
            if (self.folder / f"{name}.py").read_text(encoding="utf-8") != source:
                found.append(f"{name}.py (shared cells differ from {SHARED}, or not in jupytext's layout)")
            path = self.folder / f"{name}.ipynb"
            if not path.is_file() or path.read_text(encoding="utf-8") != ipynb:
                found.append(f"{name}.ipynb (not built from {name}.py)")
        found += [f"{p.name} (no source {p.stem}.py)" for p in sorted(self.folder.glob("*.ipynb"))
                  if p.stem not in names]
        return found

    def write(self, log=print) -> None:
        for name in self.names():
            source, ipynb = self.build(name)
            for path, text in ((self.folder / f"{name}.py", source), (self.folder / f"{name}.ipynb", ipynb)):
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    path.write_text(text, encoding="utf-8")
                    log(f"wrote {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a notebook is stale")
    p.add_argument("--folder", default=str(HERE), help="the notebooks folder (default: this script's)")
    args = p.parse_args(argv)
    notebooks = Notebooks(args.folder)
    if args.check:
        stale = notebooks.stale()
        if stale:
            print(f"stale notebooks in {notebooks.folder}: {'; '.join(stale)}; run python notebooks/make_notebooks.py",
                  file=sys.stderr)
            return 1
        return 0
    notebooks.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
