"""The course notebooks: built from their jupytext sources, committed clean (no outputs), all run on `tiny`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks' tests need nbformat: pip install -e '.[colab]'")

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
BUILD = NB_DIR / "make_notebooks.py"
needs_jupytext = pytest.mark.skipif(importlib.util.find_spec("jupytext") is None,
                                    reason="the notebooks' sources need jupytext: pip install -e '.[dev]'")


def _names():
    from hrank_ssd.course.notebooks import NOTEBOOKS

    return NOTEBOOKS


def _load_build():
    spec = importlib.util.spec_from_file_location("make_notebooks", BUILD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", _names())
def test_committed_notebook_is_clean(name):
    path = NB_DIR / f"{name}.ipynb"
    assert path.is_file(), f"{path} missing: run python notebooks/make_notebooks.py"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert f"https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/{name}.ipynb" \
        in first.source and "colab-badge.svg" in first.source
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for var in ('PROFILE = "offline"', 'RUN_DIR = "runs/latest"', 'WORK_DIR = "work"', "DEVICE = None"):
        assert var in params[0].source
    setup = code[0].source
    assert "'google.colab' in sys.modules" in setup.replace('"', "'")
    assert '"git", "clone"' in setup and "https://github.com/hrank-ssd/hrank-ssd" in setup
    assert 'GIT_TERMINAL_PROMPT="0"' in setup and "HRANK_SSD_REPO_URL" in setup and '"--branch"' in setup
    assert '".[colab]"' in setup and "keep-colab-packages" in setup and "USE_DRIVE" in setup
    assert code.index(params[0]) == 1  # setup, then parameters, then everything else


def test_colab_setup_cell_with_a_missing_repo_fails_in_one_line_without_prompting(tmp_path):
    """The setup cell as Colab runs it (google.colab present), cloning a repository that does not exist."""
    setup = nbformat.read(str(NB_DIR / "00_setup.ipynb"), as_version=4).cells[1].source
    run = ("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
           f"exec(compile({setup!r}, 'setup-cell', 'exec'))")
    clone = tmp_path / "content" / "hrank-ssd"
    env = dict(os.environ, HRANK_SSD_REPO_URL=(tmp_path / "no-such-fork").as_uri(), HRANK_SSD_BRANCH="main",
               HRANK_SSD_COLAB_DIR=str(clone))
    out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=900,
                         stdin=subprocess.DEVNULL, env=env)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"could not clone {env['HRANK_SSD_REPO_URL']} (branch main)")
    assert "HRANK_SSD_REPO_URL" in lines[0] and not clone.exists()


COLAB_RUNNER = r"""
import json, os, subprocess, sys, types
sys.modules['google.colab'] = types.ModuleType('google.colab')  # what IN_COLAB looks for
calls, real_run = [], subprocess.run

def run(args, *a, **kw):  # git runs for real; pip is recorded (Colab's packages are not reinstalled here)
    if 'pip' in args:
        calls.append(list(args))
        out = 'torch==2.11.0+cu128\nipywidgets==7.7.1\n-e git+https://x/y.git#egg=z\n' if 'freeze' in args else ''
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr='')
    calls.append(list(args))
    return real_run(args, *a, **kw)

subprocess.run = run
cells = json.loads(sys.argv[1])
In = cells['history']  # IPython's input history: where the course cell looks for papermill's injected cell
for source in cells['run']:
    exec(compile(source, 'cell', 'exec'))
print(json.dumps({'calls': calls, 'cwd': os.getcwd(), 'profile': course.profile.name, 'path0': sys.path[0],
                  'keep': open('/tmp/keep-colab-packages.txt').read()}))
"""


@pytest.mark.parametrize("injected", [None, 'PROFILE = "tiny"'])
def test_colab_setup_cell_clones_installs_and_picks_the_profile(tmp_path, injected):
    """The Colab branch with a stand-in google.colab: the clone and pip commands, then the profile: Colab's
    default (full) unless papermill injected one, which is kept."""
    nb = nbformat.read(str(NB_DIR / "00_setup.ipynb"), as_version=4)
    setup, params, course = nb.cells[1].source, nb.cells[2].source, nb.cells[3].source
    run = [setup, params] + ([injected] if injected else []) + [course]
    history = [setup, params] + (["# Parameters\n" + injected] if injected else []) + [course]
    # a stand-in for GitHub: this checkout's HEAD (a detached CI checkout too) as branch colab-test of a local repo
    origin, branch = tmp_path / "origin", "colab-test"
    for cmd in (["git", "init", "-q", str(origin)], ["git", "-C", str(origin), "fetch", "-q", str(REPO), "HEAD"],
                ["git", "-C", str(origin), "update-ref", f"refs/heads/{branch}", "FETCH_HEAD"]):
        subprocess.run(cmd, check=True, capture_output=True)
    clone = tmp_path / "content" / "hrank-ssd"
    env = dict(os.environ, HRANK_SSD_REPO_URL=origin.as_uri(), HRANK_SSD_BRANCH=branch,
               HRANK_SSD_COLAB_DIR=str(clone))
    out = subprocess.run([sys.executable, "-c", COLAB_RUNNER, json.dumps({"run": run, "history": history})],
                         capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    git, freeze, install = got["calls"]
    assert git == ["git", "clone", "--depth", "1", "--branch", branch, origin.as_uri(), str(clone)]
    assert freeze == [sys.executable, "-m", "pip", "freeze"]
    assert install == [sys.executable, "-m", "pip", "install", "-q", "-e", ".[colab]", "-c",
                       "/tmp/keep-colab-packages.txt"]
    assert got["keep"] == "torch==2.11.0+cu128\nipywidgets==7.7.1\n"  # Colab's pins kept, editable lines not
    assert got["cwd"] == str(clone) and got["path0"] == str(clone / "lib")
    assert (clone / "notebooks" / "00_setup.ipynb").is_file()
    assert got["profile"] == ("tiny" if injected else "full")


@needs_jupytext
def test_notebooks_are_built_from_their_sources():
    """Each committed .ipynb is what make_notebooks.py builds from its .py (edit the source, then build), and
    the .py is exactly jupytext's text of that .ipynb: Jupyter's pairing rewrites neither."""
    import jupytext

    from hrank_ssd.course.notebooks import SOLUTIONS

    mod = _load_build()
    assert mod.SOLUTIONS == SOLUTIONS  # the build writes the solved copies where the course looks for them
    build = mod.Notebooks()
    assert build.names() == list(_names())
    assert build.stale() == []
    for name in _names():
        source, ipynb, solved = build.build(name)
        assert (NB_DIR / f"{name}.ipynb").read_text(encoding="utf-8") == ipynb, f"{name}.ipynb: rebuild it"
        assert (NB_DIR / f"{name}.py").read_text(encoding="utf-8") == source
        cells = jupytext.reads(source, fmt="py:percent", config=build.config).cells
        student = jupytext.read(NB_DIR / f"{name}.ipynb").cells
        # the student's notebook is the source with each exercise's solution blanked, nothing else changed
        assert [c.source for c in student] == [mod.blank_solutions(c.source) if "exercise" in mod.tags(c)
                                               else c.source for c in cells]
        if solved is None:  # no exercise: no solved copy, and the notebook is exactly its source
            assert not any("exercise" in mod.tags(c) for c in cells)
            assert not (NB_DIR / mod.SOLUTIONS / f"{name}.ipynb").exists()
            assert jupytext.writes(jupytext.read(NB_DIR / f"{name}.ipynb"), fmt="py:percent",
                                   config=build.config) == source
            continue
        path = NB_DIR / mod.SOLUTIONS / f"{name}.ipynb"
        assert path.read_text(encoding="utf-8") == solved, f"{path}: rebuild it"
        copy = jupytext.read(path).cells  # the solved copy: the source's cells, its own badge and note on top
        assert [c.source for c in copy[1:]] == [c.source for c in cells[1:]]
        assert copy[0].source.endswith(cells[0].source.partition("\n\n")[2])


@needs_jupytext
def test_blanking_a_solution_keeps_the_function_and_its_indentation():
    mod = _load_build()
    source = ('def f(x):\n    """Doc."""\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n\n\n'
              'class A:\n    def g(self):\n        # BEGIN SOLUTION\n        return 2\n        # END SOLUTION')
    assert mod.blank_solutions(source) == (
        f'def f(x):\n    """Doc."""\n    # your code here\n    {mod.PLACEHOLDER}\n\n\n'
        f'class A:\n    def g(self):\n        # your code here\n        {mod.PLACEHOLDER}')
    for bad, why in (("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", "inside a function body"),
                     ("def f():\n    # BEGIN SOLUTION\n    return 1", "without # END SOLUTION"),
                     ("def f():\n    return 1\n    # END SOLUTION", "without # BEGIN SOLUTION"),
                     ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    # END SOLUTION", "inside another"),
                     ("def f():\n    return 1", "between # BEGIN SOLUTION and # END SOLUTION")):
        with pytest.raises(SystemExit, match=why):
            mod.blank_solutions(bad, "NN_x.py, cell 5")
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    exercise = code("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION", metadata={"tags": ["exercise"]})
    check = code("exercises.check_f(f)", metadata={"tags": ["check"]})
    assert mod.check_exercises([md("# t"), exercise, check, exercise, check], "NN_x") == 2
    with pytest.raises(SystemExit, match=r"NN_x.py, cell 1: an exercise code cell is followed by its check cell"):
        mod.check_exercises([md("# t"), exercise, code("print(1)"), check], "NN_x")
    with pytest.raises(SystemExit, match="solution markers belong in a cell tagged exercise"):
        mod.check_exercises([code(exercise.source)], "NN_x")


def test_solved_copies_are_clean_and_say_what_they_are():
    solved = sorted((NB_DIR / "solutions").glob("*.ipynb"))
    assert len(solved) >= 5
    for path in solved:
        assert (NB_DIR / path.name).is_file()
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
        first = nb.cells[0].source
        assert (f"https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/solutions/"
                f"{path.name})") in first and "**Solutions.**" in first and f"`notebooks/{path.name}`" in first
        assert any("# BEGIN SOLUTION" in c.source for c in nb.cells if "exercise" in c.metadata.get("tags", []))


@needs_jupytext
def test_every_notebook_carries_the_shared_cells_exactly():
    """The badge, setup, parameters and course cells have one copy, notebooks/_shared_cells.py."""
    import jupytext

    build = _load_build().Notebooks()
    badge, shared = build.badge, build.shared
    assert [c.metadata.get("tags", []) for c in shared] == [[], ["parameters"], []]
    # the badge and the setup cell name the same repository and branch (a fork changes both, in that one file)
    assert badge.endswith("(https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/{name}.ipynb)")
    assert '"HRANK_SSD_REPO_URL", "https://github.com/hrank-ssd/hrank-ssd"' in shared[0].source
    assert '"HRANK_SSD_BRANCH", "main"' in shared[0].source
    for name in _names():
        for nb in (nbformat.read(str(NB_DIR / f"{name}.ipynb"), as_version=4), jupytext.read(NB_DIR / f"{name}.py")):
            assert nb.cells[0].cell_type == "markdown"
            assert nb.cells[0].source.startswith(badge.replace("{name}", name) + "\n\n# "), name
            assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells[1:4]] == \
                [("code", c.source, c.metadata.get("tags", [])) for c in shared], name
        # on Colab the setup and course cells are forms: their titles show, their code folds away, and the
        # lesson starts at the top; the parameters cell stays open (papermill and the student change it)
        ipynb = nbformat.read(str(NB_DIR / f"{name}.ipynb"), as_version=4)
        forms = [c.metadata.get("cellView") == "form" and c.source.startswith("# @title ") for c in ipynb.cells[1:4]]
        assert forms == [True, False, True], name


def _check(folder: Path):
    return subprocess.run([sys.executable, str(folder / "make_notebooks.py"), "--check"], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


@needs_jupytext
def test_build_check_names_a_stale_notebook_and_the_build_mends_it(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(NB_DIR, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    assert _check(folder).returncode == 0
    lesson = folder / "03_finetune.py"  # a lesson edited, the notebook not rebuilt
    lesson.write_text(lesson.read_text(encoding="utf-8") + "\n# %%\nprint('one more cell')\n", encoding="utf-8")
    out = _check(folder)
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert "03_finetune.ipynb" in out.stderr and "05_flops_table" not in out.stderr
    drifted = folder / "05_flops_table.py"  # a shared cell edited in one notebook instead of _shared_cells.py
    text = drifted.read_text(encoding="utf-8")
    drifted.write_text(text.replace('DEVICE = None  #', 'DEVICE = "cpu"  #', 1), encoding="utf-8")
    out = _check(folder)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "05_flops_table.py (shared cells differ" in out.stderr and "03_finetune.ipynb" in out.stderr
    (folder / "99_orphan.ipynb").write_text((folder / "00_setup.ipynb").read_text())
    assert "99_orphan.ipynb (no source" in _check(folder).stderr
    (folder / "99_orphan.ipynb").unlink()
    solved = folder / "solutions" / "01_rank_generation.ipynb"  # a solved copy edited by hand, one left over
    solved.write_text(solved.read_text(encoding="utf-8").replace("# BEGIN SOLUTION", "# BEGIN", 1), encoding="utf-8")
    (folder / "solutions" / "06_video_demo.ipynb").write_text((folder / "06_video_demo.ipynb").read_text())
    out = _check(folder).stderr
    assert "solutions/01_rank_generation.ipynb (not built from 01_rank_generation.py)" in out
    assert "solutions/06_video_demo.ipynb (no exercises in 06_video_demo.py)" in out
    assert "01_rank_generation.ipynb (not built" not in out.replace("solutions/01_rank_generation", "")
    build = subprocess.run([sys.executable, str(folder / "make_notebooks.py")], capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
    assert build.returncode == 0, build.stderr
    assert _check(folder).returncode == 0
    assert drifted.read_text(encoding="utf-8") == text  # the canonical shared cells are back
    assert not (folder / "solutions" / "06_video_demo.ipynb").exists() and "removed" in build.stdout
    assert "# BEGIN SOLUTION" in solved.read_text(encoding="utf-8")
    nb = nbformat.read(str(folder / "03_finetune.ipynb"), as_version=4)
    assert nb.cells[-1].source == "print('one more cell')" and nb.cells[-1].outputs == []


def _kernel_missing() -> str:
    """Why the notebooks cannot be executed here ('' when they can): only a missing install skips."""
    if importlib.util.find_spec("papermill") is None:
        return "papermill is not installed: pip install -e '.[colab]'"
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        return "no python3 Jupyter kernel: python -m ipykernel install --user --name python3"
    return ""


KERNEL_MISSING = _kernel_missing()


@pytest.mark.skipif(bool(KERNEL_MISSING), reason=KERNEL_MISSING)
def test_one_kernel_resets_names_between_notebooks(tmp_path):
    """The tests run the course in one kernel: the same process, yet no name survives into the next notebook."""
    from support.shared_kernel import SharedKernel

    from hrank_ssd.course.notebooks import execute_notebooks
    from hrank_ssd.errors import HRankError

    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    paths = []
    for k, body in enumerate(("leftover = 1", "leftover")):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                               "display_name": "Python 3"}})
        nb.cells = [nbformat.v4.new_code_cell("PROFILE = RUN_DIR = WORK_DIR = DEVICE = None",
                                              metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(f"import os\nopen({str(pids[k])!r}, 'w').write(str(os.getpid()))"),
                    nbformat.v4.new_code_cell(body)]
        paths.append(tmp_path / f"{k}.ipynb")
        nbformat.write(nb, str(paths[-1]))
    with pytest.raises(HRankError, match=r"notebook 1.ipynb failed in cell \d+: NameError: name 'leftover'"):
        with SharedKernel(tmp_path / "inputs") as shared:
            execute_notebooks(paths, tmp_path / "run", "tiny", tmp_path / "work", log=lambda m: None, shared=shared)
    assert pids[0].read_text() == pids[1].read_text()  # one kernel process ran both
    assert not (tmp_path / "inputs").exists()


@pytest.mark.skipif(bool(KERNEL_MISSING), reason=KERNEL_MISSING)
def test_the_kernels_warnings_stay_out_of_the_terminal(tmp_path, capfd):
    """`make course` prints its own progress lines, not the kernel's log (such as the TCP-encryption warning)."""
    from hrank_ssd.course.notebooks import execute_notebooks

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("PROFILE = RUN_DIR = WORK_DIR = DEVICE = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from ipykernel.kernelapp import IPKernelApp\n"
                                          "IPKernelApp.instance().log.warning('a kernel warning')")]
    nbformat.write(nb, str(tmp_path / "warns.ipynb"))
    execute_notebooks([tmp_path / "warns.ipynb"], tmp_path / "run", "tiny", tmp_path / "work", log=print)
    out, err = capfd.readouterr()
    assert "[course] warns.ipynb done in" in out
    assert "a kernel warning" not in out + err and "without encryption" not in out + err


@pytest.mark.skipif(bool(KERNEL_MISSING), reason=KERNEL_MISSING)
def test_a_cell_past_its_timeout_is_one_line_error(tmp_path):
    from hrank_ssd.course.notebooks import execute_notebooks
    from hrank_ssd.errors import HRankError

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("PROFILE = RUN_DIR = WORK_DIR = DEVICE = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\ntime.sleep(60)")]
    nbformat.write(nb, str(tmp_path / "slow.ipynb"))
    with pytest.raises(HRankError, match=r"^notebook slow.ipynb: a cell ran longer than 3 s and was stopped"):
        execute_notebooks([tmp_path / "slow.ipynb"], tmp_path / "run", "tiny", tmp_path / "work", log=lambda m: None,
                          cell_timeout=3)


@pytest.mark.slow
@pytest.mark.skipif(bool(KERNEL_MISSING), reason=KERNEL_MISSING)
def test_all_notebooks_run_on_tiny_profile_and_report(tmp_path, monkeypatch):
    from support.shared_kernel import SharedKernel

    from hrank_ssd.course import report_tables
    from hrank_ssd.course.models import MODEL_TITLES
    from hrank_ssd.course.notebooks import execute_notebooks, notebook_paths
    from hrank_ssd.course.report import write_report

    # the kernel times on the conv clock (tests/support/fake_clock.py): the latency table and the models it
    # chooses are the same on any machine, however busy
    kernel_site = Path(__file__).resolve().parent / "support" / "sim_kernel"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(kernel_site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HRANK_SSD_CONV_CLOCK", "1")
    run_dir, work = tmp_path / "run", tmp_path / "work"
    with SharedKernel(tmp_path / "inputs") as shared:  # each after %reset_selective -f .: test_one_kernel_resets_names
        done = execute_notebooks(notebook_paths(NB_DIR), run_dir, "tiny", work, device="cpu", log=lambda m: None,
                                 shared=shared,
                                 cell_timeout=900)  # a cell that never returns fails the test instead of hanging CI
    assert [p.stem for p in done] == list(_names())
    checks = 0  # the solved copies ran: every exercise check said correct (execute_notebooks also stops otherwise)
    for path in done:
        nb = nbformat.read(str(path), as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and '"tiny"' in injected[0].source
        assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        for cell in (c for c in nb.cells if "check" in c.metadata.get("tags", [])):
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert text.startswith("correct:") and "not yet:" not in text, (path.name, text)
            checks += 1
    assert checks >= 5
    results = run_dir / "results"
    for name in ("map.csv", "per_class_ap.csv", "bench.csv", "flops.csv", "sensitivity.csv", "criteria.csv",
                 "log_vgg16-ssd.csv", "log_vgg16-ssd-pruned.csv", "settings.json", "video.json", "machine.json",
                 "latency_table.json", "latency_models.csv", "frontier.csv", "frontier_machine.json",
                 "log_vgg16-ssd-lat-paper-macs.csv", "log_vgg16-ssd-lat-small.csv", "log_mb1-ssd-pruned.csv",
                 "yours.json"):
        assert (results / name).is_file(), name
    assert json.loads((results / "settings.json").read_text())["name"] == "tiny"
    _the_students_functions_made_the_model_03_finetuned(work / "tiny")
    # notebook 03's loss curve was drawn inside the notebook while training ran (a PNG in the cell's output)
    nb03 = nbformat.read(str(run_dir / "notebooks" / "03_finetune.ipynb"), as_version=4)
    live = [c for c in nb03.cells if c.cell_type == "code" and "LiveLossCurve(" in c.source]
    assert len(live) == 1 and any("image/png" in o.get("data", {}) for o in live[0].outputs)
    assert (run_dir / "report.md").is_file()  # notebook 06 wrote the report itself, as on Colab
    md, html = write_report(run_dir)
    text = md.read_text()
    for title in MODEL_TITLES.values():  # all six models of the comparison
        assert f"| {title} |" in text
    assert "| model | mAP (ours) | mAP (theirs, published) |" in text
    assert "_Not available" not in text and "Latencies measured on " in text
    assert html.read_text().count("<table>") >= 5
    mine = json.loads((results / "yours.json").read_text())  # notebook 02's rate: its own rows, or one line
    assert f"| {report_tables.title(mine['model'])} |" in text if mine["model"] else text.count("Yours:") == 1
    assert (run_dir / "video" / "demo_pruned.mp4").is_file()


def _the_students_functions_made_the_model_03_finetuned(work: Path):
    """Notebook 02's solved run: the pruned model notebook 03 finetuned was made by the student's top_filters and
    prune_pair (its sidecar says so; its kept filters are theirs, checked equal to HRank's rule), and 03's run
    started from that file."""
    import torch

    from hrank_ssd.course.student import PRUNE_PAIR, TOP_FILTERS
    from hrank_ssd.hrank.pruning import select_filters
    from hrank_ssd.hrank.ranks import load_ranks
    from hrank_ssd.nets.models import load_model, read_sidecar

    choice = json.loads((work / "choice.json").read_text())
    yours = work / "models" / choice["pruned"]
    assert yours.name.endswith("-yours.pth")
    side = read_sidecar(yours)
    assert side["made_by"] == [TOP_FILTERS, PRUNE_PAIR]
    model = load_model(work / "models" / "vgg16-ssd.pth")
    scores = load_ranks(work / "ranks", "vgg16-ssd", model.plan.prunable)
    assert [side["kept_indices"][n] for n in side["kept_indices"]] == [
        select_filters(s, len(k)) for s, k in zip(scores, side["kept_indices"].values())]
    runs = list((work / "checkpoints").glob(f"{yours.stem[:-len('-yours')]}-ft*/model_best.pth-*.tar"))
    assert len(runs) == 1, runs
    args = torch.load(runs[0], map_location="cpu", weights_only=False)["args"]
    assert args["base_net"] == str(yours)
