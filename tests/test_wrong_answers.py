"""The student's notebooks with every exercise and question filled by a plausible wrong answer: each check says
what is wrong (a ``not yet:`` line, and a hint for an exercise), never the answer, and the course goes on to the
end, the pipeline using the library's functions where the student's did not agree."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from test_notebooks import KERNEL_MISSING, NB_DIR

# notebook -> function -> a wrong body (the lines between BEGIN/END SOLUTION); two sets, one course run each
CONVS_ONLY = """total = []


def hook(module, inputs, output):
    kh, kw = module.kernel_size
    total.append(output.numel() * (module.in_channels // module.groups) * kh * kw)


handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
with torch.no_grad():
    model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
for handle in handles:
    handle.remove()
return sum(total){}"""
WRONG = [
    {
        "01_rank_generation": {
            "average_rank": "ranks = torch.cat([map_ranks(maps) for maps in batches]).double()\n"
                            "return ranks.mean(1)  # averaged over the filters: one value per image",
            "least_stable_layer": 'return "fc7"  # not a prunable layer',
        },
        "02_hrank_pruning": {
            "faster_pruning": 'return "fine-grained"',
            "top_filters": "import numpy as np\n\nreturn sorted(int(i) for i in np.argsort(scores)[:keep])  # lowest",
            "best_criterion": 'return "chance"',
            "sensitivity_scan": 'return [{"layer": layers[0], "rate": r, "map": evaluate(prune_one(layers[0], r))}\n'
                                '        for r in rates]  # the first layer only',
            "most_sensitive_layer": 'return "conv3_3"  # a layer the tiny profile does not scan',
            "your_stage_rates": 'return {"conv1": 0.1, "conv2": 0.1, "conv3": 0.1, "conv4": 0.5, "conv5": 0.5, '
                                '"fc6": 0.5}  # the paper rate: too few MACs cut',
            "prune_pair": "import copy\n\nconv, next_conv = copy.deepcopy(conv), copy.deepcopy(next_conv)\n"
                          "conv.weight = torch.nn.Parameter(conv.weight[keep].detach().clone())\n"
                          "conv.bias = torch.nn.Parameter(conv.bias[keep].detach().clone())\n"
                          "next_conv.weight = torch.nn.Parameter(next_conv.weight[:, keep].detach().clone())\n"
                          "return conv, bn, next_conv  # the BatchNorm forgotten",
        },
        "03_finetune": {
            "distillation_loss": "p = torch.log_softmax(teacher / T, -1)\nq = torch.log_softmax(student / T, -1)\n"
                                 "return (q.exp() * (q - p)).sum() * T * T  # KL the other way round",
        },
        "04_eval_map_fps": {
            "voc07_ap": "ap = 0.0\nfor t in [i / 10 for i in range(11)]:\n"
                        "    first = [p for p, r in zip(precision, recall) if r >= t][:1]\n"
                        "    ap += (first[0] if first else 0.0) / 11\nreturn ap  # no envelope",
        },
        "05_flops_table": {"count_macs": CONVS_ONLY.format("  # BatchNorm and Linear left out")},
        "08_speed_frontier": {"latency_frontier_models": "return []"},
    },
    {
        "01_rank_generation": {
            "map_ranks": "return torch.full(maps.shape[:2], min(maps.shape[-2:]))  # the map's size",
            "average_rank": "total, images = 0, 0\nfor maps in batches:\n"
                            "    total, images = total + map_ranks(maps).sum(0), images + maps.shape[0]\n"
                            "return total  # the sum, not the mean",
        },
        "02_hrank_pruning": {
            "top_filters": "order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))\n"
                           "return sorted(order[:keep])  # ties keep the lower index",
            "prune_pair": "import copy\n\nconv = copy.deepcopy(conv)\n"
                          "conv.weight = torch.nn.Parameter(conv.weight[keep].detach().clone())\n"
                          "conv.bias = torch.nn.Parameter(conv.bias[keep].detach().clone())\n"
                          "if bn is not None:\n    bn = copy.deepcopy(bn)\n"
                          "    bn.weight = torch.nn.Parameter(bn.weight[keep].detach().clone())\n"
                          "    bn.bias = torch.nn.Parameter(bn.bias[keep].detach().clone())\n"
                          "    bn.running_mean, bn.running_var = bn.running_mean[keep], bn.running_var[keep]\n"
                          "return conv, bn, next_conv  # the next conv's input forgotten",
        },
        "04_eval_map_fps": {
            "voc07_ap": "ap = 0.0\nfor t in [i / 10 for i in range(11)]:\n"
                        "    reached = [p for p, r in zip(precision, recall) if r >= t]\n"
                        "    ap += (max(reached) if reached else 0.0) / 10\nreturn ap  # ten points",
        },
        "05_flops_table": {"count_macs": CONVS_ONLY.format(" * 2  # FLOPs, not MACs")},
    },
]
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"


def fill(source: str, bodies: dict) -> str:
    """``source`` with the solution block of each function named in ``bodies`` replaced by its wrong body."""
    lines, out, current, skipping = source.splitlines(), [], None, False
    for line in lines:
        name = re.match(r"\s*def (\w+)\(", line)
        if name:
            current = name.group(1)
        if line.strip() == BEGIN and current in bodies:
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + b if b else "" for b in bodies[current].splitlines()]
            skipping = True
        elif line.strip() == END and skipping:
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out)


def _wrong_copies(folder: Path, wrong: dict) -> list:
    from hrank_ssd.course.notebooks import notebook_paths

    paths = []
    for path in notebook_paths(NB_DIR):
        nb = nbformat.read(str(path), as_version=4)
        bodies, filled = wrong.get(path.stem, {}), set()
        for cell in nb.cells:
            if "exercise" in cell.metadata.get("tags", []):
                new = fill(cell.source, bodies)
                filled |= {n for n in bodies if f"def {n}(" in cell.source}
                cell.source = new
        assert filled == set(bodies), (path.stem, set(bodies) - filled)  # every wrong answer found its exercise
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(folder / path.name))
        paths.append(folder / path.name)
    return paths


def _checks(path: Path) -> dict:
    """The executed notebook's check cells: their source -> their printed text."""
    nb = nbformat.read(str(path), as_version=4)
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return {c.source: "".join(o.get("text", "") for o in c.outputs)
            for c in nb.cells if "check" in c.metadata.get("tags", [])}


@pytest.mark.slow
@pytest.mark.skipif(bool(KERNEL_MISSING), reason=KERNEL_MISSING)
@pytest.mark.parametrize("answers", [0, 1])
def test_wrong_answers_are_named_and_the_course_goes_on(tmp_path, monkeypatch, answers):
    from support.shared_kernel import SharedKernel

    from hrank_ssd.course.notebooks import execute_one, notebook_params

    kernel_site = Path(__file__).resolve().parent / "support" / "sim_kernel"  # the conv clock: see test_notebooks
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(kernel_site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HRANK_SSD_CONV_CLOCK", "1")
    wrong = WRONG[answers]
    paths = _wrong_copies(tmp_path / "wrong", wrong)
    run, work = tmp_path / "run", tmp_path / "work"
    params = notebook_params("tiny", run, work, "cpu")
    (run / "notebooks").mkdir(parents=True)
    with SharedKernel(tmp_path / "inputs") as shared:
        done = [execute_one(p, run / "notebooks", params, log=lambda m: None, shared=shared, cell_timeout=900)
                for p in paths]
    assert [p.stem for p in done] == [p.stem for p in paths]  # every notebook ran to its end
    for path in done:
        for call, text in _checks(path).items():
            names = [n for n in wrong.get(path.stem, {}) if re.search(rf"\b{n}\b", call)]
            if names:  # each wrong answer: a not-yet line, then what is wrong (a hint, or the target missed)
                verdicts = [line for line in text.splitlines() if line.startswith(("correct:", "not yet:"))]
                wrongs = [line for line in verdicts if line.startswith("not yet:")]
                assert len(wrongs) == len(names), (path.stem, call, text)
                assert text.count("  hint: ") + text.count("  not met: ") == len(names), (path.stem, call, text)
    from hrank_ssd.course.student import PRUNE_PAIR

    choice = json.loads((work / "tiny" / "choice.json").read_text())
    made_by = json.loads((work / "tiny" / "models" / f"{choice['pruned']}.json").read_text())["made_by"]
    # the library's surgery made the model 03 finetuned (and its filters, where the student's differ from them:
    # always for the lowest-rank ones, for ties only where a layer's kept filters meet a tie)
    assert made_by == [] if answers == 0 else PRUNE_PAIR not in made_by
