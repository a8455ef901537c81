"""notebooks/t1jax_colab.ipynb runs: every cell but the Colab install, executed in a real kernel with
a tiny model, tiny problems and two RL steps in place of its parameters."""

import json

import nbformat
import pytest
from cli_runner import ROOT

NOTEBOOK = ROOT / "notebooks" / "t1jax_colab.ipynb"


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert sum(_tagged(cell, "parameters") for cell in code) == 1


@pytest.mark.long
@pytest.mark.slow
def test_the_notebook_runs_on_a_tiny_model(tmp_path):
    from nbclient import NotebookClient

    problems = tmp_path / "problems.jsonl"
    rows = [{"problem": f"What is {a} plus {a + 1}?", "answer": str(2 * a + 1)} for a in range(12)]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parameters = {
        "SOURCE": "",
        "CONFIG": str(ROOT / "configs" / "tiny_math.py"),
        "PROBLEMS": str(problems),
        "TRAIN_PROBLEMS": 8,
        "EVAL_PROBLEMS": 4,
        "RL_STEPS": 2,
        "WORKDIR": str(tmp_path / "work"),
        "EXTRA": ["--config.sft.num_steps=4", "--config.eval.budgets=4,8", "--config.run.progress=false"],
    }
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if not _tagged(cell, "colab")]
    (cell,) = [cell for cell in notebook.cells if _tagged(cell, "parameters")]
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs)
    assert "8 RL problems, 4 evaluation problems from problems.jsonl" in text
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 2  # training curves, scaling curves
    work = tmp_path / "work"
    rl_steps = [json.loads(line)["step"] for line in (work / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert rl_steps == [1, 2]
    for name in ("before_RL", "after_RL"):
        result = json.loads((work / "eval" / name / "eval.json").read_text())
        assert result["scaling"]["budgets"] == [4, 8]
