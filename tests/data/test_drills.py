"""Check drills: every line is right arithmetic (checked by an evaluator written here), drawn from
one split, reproducible, and what the traces' checks compute."""

import ast
import operator
import random
import re
from fractions import Fraction

import pytest

from t1jax.data.drills import DRILL_PROMPT, check_drills, drill_lines
from t1jax.data.tasks import get_task
from t1jax.errors import ConfigError

DEMO_EQUATIONS = dict(max_coefficient=6, max_solution=12, max_constant=40)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _value(expression: str) -> Fraction:
    """Exact value of an arithmetic expression of integers, + - * / and parentheses."""

    def walk(node):
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        raise ValueError(f"unexpected {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body)


@pytest.mark.parametrize(
    "task", [get_task("linear_equation", **DEMO_EQUATIONS), get_task("linear_equation", both_sides=True,
             negative=True), get_task("countdown")], ids=["linear", "linear_both_sides", "countdown"],
)  # fmt: skip
def test_every_drill_line_is_right_arithmetic(task):
    lines = drill_lines(task, "train", 300, seed=0)
    assert len(lines) == 300
    for line in lines:
        for equation in line.split(", "):  # x on both sides: "3*4+1 = 13, 2*4+5 = 13"
            left, right = equation.split(" = ")
            assert _value(left) == Fraction(right), line


def test_linear_drills_hold_wrong_attempts_and_no_right_hand_side():
    task = get_task("linear_equation", **DEMO_EQUATIONS)
    lines = drill_lines(task, "train", 400, seed=1)
    assert all(re.fullmatch(r"\d\*(\d+|\(-\d+\))(\+\d+)? = -?\d+", line) for line in lines), lines[:5]
    # x = 0..12 in the problems; wrong attempts reach beyond (sign flipped, forgot to divide)
    xs = [int(re.match(r"\d\*\(?(-?\d+)", line).group(1)) for line in lines]
    assert min(xs) < 0 and max(xs) > 12
    assert "right side" not in " ".join(lines)


def test_a_drill_is_the_computation_of_the_check():
    rng = random.Random(0)
    for task in (get_task("linear_equation", **DEMO_EQUATIONS), get_task("countdown")):
        for problem in task.generate("train", 30, seed=3):
            for attempt in [task.correct_attempt(problem), *task.wrong_attempts(problem, rng, 3)]:
                assert task.check(problem, attempt)[0].startswith(task.drill(problem, attempt))


def test_drills_use_only_problems_of_their_split(monkeypatch):
    task = get_task("linear_equation", **DEMO_EQUATIONS)
    seen = []
    original = type(task).drill
    monkeypatch.setattr(type(task), "drill", lambda self, p, a: seen.append(p) or original(self, p, a))
    drill_lines(task, "validation", 200, seed=0)
    assert len(seen) == 200 and {task.split_of(p) for p in seen} == {"validation"}


def test_check_drills_are_documents_of_lines_and_reproducible():
    task = get_task("linear_equation", **DEMO_EQUATIONS)
    docs = check_drills(task, "train", 5, seed=0, lines_per_drill=7)
    assert len(docs) == 5 and all(d["prompt"] == DRILL_PROMPT for d in docs)
    assert all(len(d["response"].split("\n")) == 7 for d in docs)
    assert docs == check_drills(task, "train", 5, seed=0, lines_per_drill=7)
    assert docs != check_drills(task, "train", 5, seed=1, lines_per_drill=7)


def test_a_task_without_drills_and_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="graph_path has no check drills"):
        drill_lines(get_task("graph_path"), "train", 1, seed=0)
    with pytest.raises(ConfigError, match="lines_per_drill"):
        check_drills(get_task("countdown"), "train", 1, seed=0, lines_per_drill=0)
