"""Build the course notebooks (notebooks/NN_name.ipynb, and notebooks/solutions/) from their sources (NN_name.py).

The sources are the notebooks written as Python, in jupytext's percent format (``# %%`` starts a code cell,
``# %% [markdown]`` a text cell, ``# %% tags=["parameters"]`` papermill's parameters cell); ruff lints them
like the rest of the code. Each is paired with its ``.ipynb`` (``notebooks/jupytext.toml``), so Jupyter with
jupytext opens either file and saves both. The ``.ipynb`` files are what Colab and papermill run; they are
committed without outputs.

Every notebook opens with the same cells: an Open-in-Colab badge on top of its title, a setup cell (Colab:
clone + install; locally: go to the repository root), the ``parameters`` cell and the cell that builds the
:class:`hrank_ssd.course.steps.Course`. Their one copy is ``notebooks/_shared_cells.py``; the build copies it
into every source (each notebook stays standalone: on Colab it runs before the library is installed).

Exercises: a code cell tagged ``exercise`` (``# %% tags=["exercise"]``) holds one or more functions whose body
is the solution, between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines (inside a function: the student's
placeholder raises, and only a call can catch that); the next cell, tagged ``check``, calls a
``hrank_ssd.course.exercises.check_*`` function. The student's notebook ``NN_name.ipynb`` gets each solution
replaced by a placeholder that raises ``NotImplementedError`` (its check then says so, politely); the solved copy
``solutions/NN_name.ipynb`` keeps the source's cells as they are. The course and the tests run the solved copies.

The README's Colab links follow the shared badge: the build points them at the repository and branch the badge
names, so a fork edits ``_shared_cells.py`` alone and rebuilds.

    python notebooks/make_notebooks.py          # refresh the sources' shared cells, write every .ipynb
    python notebooks/make_notebooks.py --check  # exit 1 with one line when a notebook is stale; writes nothing
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SHARED = "_shared_cells.py"
SOLUTIONS = "solutions"  # the solved copies' folder (hrank_ssd.course.notebooks.SOLUTIONS names the same)
FORMAT = "py:percent"
BADGE_START = "[![Open In Colab]"
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("exercise: write your code here, then run the check cell below")'
SOLVED_NOTE = ("> **Solutions.** This copy of `notebooks/{name}.ipynb` has every exercise solved (the course runs "
               "it). To work the exercises yourself, open `notebooks/{name}.ipynb`.")
METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "colab": {"provenance": [], "toc_visible": True},
    "accelerator": "GPU",
}


def tags(cell) -> list:
    return cell.metadata.get("tags", [])


def blank_solutions(source: str, where: str = "exercise cell") -> str:
    """An exercise cell's source with every solution block replaced by a placeholder, indented as the block.

    Raises SystemExit naming ``where`` for a cell without a block, a block outside a function body (the
    placeholder would stop Run-all), nested or unclosed markers."""
    out, indent, blocks = [], None, 0
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if indent is not None:
                raise SystemExit(f"{where}: {BEGIN} inside another solution block")
            indent = line[:len(line) - len(line.lstrip())]
            if not indent:
                raise SystemExit(f"{where}: {BEGIN} must sit inside a function body (indented), so that the "
                                 f"student's placeholder raises only when the check calls it")
            out += [f"{indent}# your code here", f"{indent}{PLACEHOLDER}"]
            blocks += 1
        elif stripped == END:
            if indent is None:
                raise SystemExit(f"{where}: {END} without {BEGIN}")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise SystemExit(f"{where}: {BEGIN} without {END}")
    if not blocks:
        raise SystemExit(f"{where}: an exercise cell holds its solution between {BEGIN} and {END}")
    return "\n".join(out)


def check_exercises(cells, name: str) -> int:
    """How many exercise cells ``cells`` hold; SystemExit when one lacks its check cell right after it, or a
    solution marker sits outside an exercise cell."""
    count = 0
    for i, cell in enumerate(cells):
        where = f"{name}.py, cell {i}"
        if "exercise" in tags(cell):
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            if cell.cell_type != "code" or nxt is None or nxt.cell_type != "code" or "check" not in tags(nxt):
                raise SystemExit(f"{where}: an exercise code cell is followed by its check cell "
                                 f"(# %% tags=[\"check\"])")
            blank_solutions(cell.source, where)
            count += 1
        elif BEGIN in cell.source or END in cell.source:
            raise SystemExit(f"{where}: solution markers belong in a cell tagged exercise")
    return count


class Notebooks:
    """The sources of one notebooks folder, the shared cells, and what the build makes of them."""

    def __init__(self, folder=HERE):
        self.folder = Path(folder)
        self.config = jupytext.config.load_jupytext_configuration_file(str(self.folder / "jupytext.toml"))
        _doc, badge, *shared = self.read(self.folder / SHARED).cells
        if badge.cell_type != "markdown" or [c.cell_type for c in shared] != ["code"] * 3:
            raise SystemExit(f"{SHARED}: expected a note, the badge (markdown) and three code cells")
        self.badge, self.shared = badge.source, shared
        self.readme = self.folder.parent / "README.md"

    def readme_text(self):
        """(the README's text, the same with its Colab links pointing where the badge points); None without one."""
        if not self.readme.is_file():
            return None
        text = self.readme.read_text(encoding="utf-8")
        return text, COLAB_LINK.sub(COLAB_LINK.search(self.badge).group(0), text)

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

    @staticmethod
    def _ipynb(name: str, sources: list, cells) -> str:
        out = new_notebook(metadata=METADATA)
        for i, (text, cell) in enumerate(zip(sources, cells)):
            new = new_code_cell if cell.cell_type == "code" else new_markdown_cell
            out.cells.append(new(text, metadata=dict(cell.metadata), id=f"{name[:2]}-{i:02d}"))  # stable ids
        nbformat.validate(out)
        return nbformat.writes(out) + "\n"

    def build(self, name: str) -> tuple:
        """(the source's text, the student's .ipynb text, the solved copy's .ipynb text or None) for ``name``.

        The student's notebook has every exercise's solution blanked; a notebook without exercises has no solved
        copy. The solved copy's title cell carries its own badge (``solutions/NAME``) and a note."""
        nb = self.with_shared_cells(self.read(self.folder / f"{name}.py"), name)
        source = jupytext.writes(nb, fmt=FORMAT, config=self.config)
        exercises = check_exercises(nb.cells, name)
        student = [blank_solutions(c.source) if "exercise" in tags(c) else c.source for c in nb.cells]
        if not exercises:
            return source, self._ipynb(name, student, nb.cells), None
        title = nb.cells[0].source.partition("\n\n")[2]
        solved = [f"{self.badge.replace('{name}', f'{SOLUTIONS}/{name}')}\n\n{SOLVED_NOTE.format(name=name)}\n\n"
                  f"{title}"] + [c.source for c in nb.cells[1:]]
        return source, self._ipynb(name, student, nb.cells), self._ipynb(name, solved, nb.cells)

    def outputs(self, name: str) -> dict:
        """{path: text} of everything the build writes for ``name`` (the source, the notebook, its solved copy)."""
        source, student, solved = self.build(name)
        files = {self.folder / f"{name}.py": source, self.folder / f"{name}.ipynb": student}
        if solved is not None:
            files[self.folder / SOLUTIONS / f"{name}.ipynb"] = solved
        return files

    def stale(self) -> list:
        """What the build would change: 'NAME.py (shared cells)', 'NAME.ipynb', 'solutions/NAME.ipynb', or an
        .ipynb the build does not make."""
        names, found, made = self.names(), [], set()
        for name in names:
            for path, text in self.outputs(name).items():
                made.add(path)
                if path.suffix == ".py" and path.read_text(encoding="utf-8") != text:
                    found.append(f"{name}.py (shared cells differ from {SHARED}, or not in jupytext's layout)")
                elif path.suffix == ".ipynb" and (not path.is_file() or path.read_text(encoding="utf-8") != text):
                    found.append(f"{path.relative_to(self.folder).as_posix()} (not built from {name}.py)")
        found += [f"{p.name} (no source {p.stem}.py)" for p in sorted(self.folder.glob("*.ipynb"))
                  if p.stem not in names]
        found += [f"{SOLUTIONS}/{p.name} (no exercises in {p.stem}.py)"
                  for p in sorted((self.folder / SOLUTIONS).glob("*.ipynb")) if p not in made]
        readme = self.readme_text()
        if readme is not None and readme[0] != readme[1]:
            found.append(f"../README.md (its Colab links are not the badge's of {SHARED})")
        return found

    def write(self, log=print) -> None:
        made = set()
        for name in self.names():
            for path, text in self.outputs(name).items():
                made.add(path)
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
                    log(f"wrote {path}")
        for path in sorted((self.folder / SOLUTIONS).glob("*.ipynb")):
            if path not in made:  # a solved copy of a notebook that has no exercise any more
                path.unlink()
                log(f"removed {path}")
        readme = self.readme_text()
        if readme is not None and readme[0] != readme[1]:
            self.readme.write_text(readme[1], encoding="utf-8")
            log(f"wrote {self.readme} (Colab links)")


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
