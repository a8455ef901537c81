"""Built-in tasks: registry, seeded generators, disjoint splits, exact verifiers, plausible mistakes."""

import random
import time

import pytest

from t1jax.data.tasks import SPLITS, TASKS, get_task
from t1jax.data.tasks.countdown import Countdown
from t1jax.data.tasks.linear_equation import LinearEquation
from t1jax.errors import ConfigError


def test_registry_names_valid_tasks_and_knobs():
    assert sorted(TASKS) == ["countdown", "graph_path", "linear_equation"]
    assert isinstance(get_task("countdown"), Countdown)
    assert get_task("linear_equation", negative=True).knobs.negative
    with pytest.raises(ConfigError, match="unknown task 'sudoku'; valid tasks: countdown, graph_path, linear_equation"):
        get_task("sudoku")
    with pytest.raises(ConfigError, match="unknown knob.*max_nubmers.*valid knobs: min_numbers, max_numbers"):
        get_task("countdown", max_nubmers=4)
    with pytest.raises(ConfigError, match="min_numbers <= max_numbers"):
        get_task("countdown", min_numbers=4, max_numbers=3)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_generators_are_deterministic_under_a_seed(name):
    task = get_task(name)
    first = task.generate("train", 50, seed=1)
    assert first == task.generate("train", 50, seed=1)
    assert [p["id"] for p in first] != [p["id"] for p in task.generate("train", 50, seed=2)]
    assert len({p["id"] for p in first}) == 50  # deduplicated within the split
    for problem in first:
        assert problem["task"] == name and isinstance(problem["answer"], str)
        assert task.prompt(problem).endswith("\n") and problem["problem"] in task.prompt(problem)


@pytest.mark.parametrize(
    "task, sizes",
    [(Countdown(split_fractions={"train": 0.5, "validation": 0.25, "test": 0.25}), (1500, 600, 600)),
     (LinearEquation(LinearEquation.Knobs(negative=True, both_sides=True)), (3000, 1000, 1000))],
)  # fmt: skip
def test_splits_never_overlap_and_are_a_pure_function_of_the_problem(task, sizes):
    keys = {}
    for split, n in zip(SPLITS, sizes):
        problems = task.generate(split, n, seed=0)
        keys[split] = {task.canonical_key(p) for p in problems}
        assert len(keys[split]) == n
        assert all(task.split_of(p) == split for p in problems)
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    # The split depends only on the problem itself: not on the seed, the knobs, or extra fields.
    other_knobs = type(task)(type(task).Knobs(), split_fractions=task.split_fractions)
    for problem in task.generate("test", 100, seed=7):
        bare = {k: v for k, v in problem.items() if k not in ("id", "problem", "answer", "solution")}
        if "numbers" in bare:
            bare["numbers"] = list(reversed(bare["numbers"]))
        assert task.split_of(bare) == other_knobs.split_of(bare) == "test"


def test_generation_errors_are_clear():
    task = get_task("linear_equation", max_coefficient=2, max_solution=1, max_constant=1)
    with pytest.raises(ConfigError, match="too small"):
        task.generate("train", 50, seed=0)
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        task.generate("dev", 5, seed=0)
    with pytest.raises(ConfigError, match="sum to 1"):
        Countdown(split_fractions={"train": 0.9, "validation": 0.1, "test": 0.1})


@pytest.mark.parametrize("knobs", [{}, {"max_numbers": 4}, {"operations": "+-"}])
def test_countdown_instances_are_solvable_and_within_knobs(knobs):
    task = get_task("countdown", **knobs)
    for problem in task.generate("train", 200, seed=3):
        assert task.verify(problem, problem["solution"]) and problem["solution"] == problem["answer"]
        assert task.knobs.min_numbers <= len(problem["numbers"]) <= task.knobs.max_numbers
        assert all(1 <= v <= 20 for v in problem["numbers"]) and 1 <= problem["target"] <= 100
        assert problem["target"] not in problem["numbers"]
        assert set(problem["solution"]) <= set("0123456789()" + task.knobs.operations)


COUNTDOWN_CASES = [
    ([3, 5, 2], 16, "(3+5)*2", True),
    ([3, 5, 2], 16, " ( 3 + 5 ) * 2 ", True),
    ([3, 5, 2], 16, "2*(5+3)", True),
    ([3, 5, 2], 16, "(3+5)*2 = 16", True),
    ([3, 5, 2], 16, "(3+5)*2 = 17", False),
    ([3, 5, 2], 16, "3*5+2", False),  # 17
    ([3, 5, 2], 16, "3+5*2", False),  # precedence: 13
    ([3, 5, 2], 16, "(3+3)*2", False),  # 3 used twice
    ([3, 5, 2], 16, "2**4", False),
    ([3, 5, 2], 16, "__import__('os')", False),
    ([3, 5, 2], 16, "8*2", False),  # 8 not given
    ([3, 5, 2], 16, "16", False),
    ([3, 5, 2], 16, "", False),
    ([3, 5, 2], 16, "-2+18", False),  # no unary minus
    ([3, 5, 2], 16, "(3+5)*2.0", False),
    ([3, 5, 2], 16, "(\uff13+5)*2", False),  # a full-width digit is not an ASCII digit
    ([3, 5, 2], 16, "(3+5)*2)", False),
    ([3, 5, 2], 1, "(5-3)/2", True),
    ([3, 5, 2], 1, "5/5", False),  # only one 5
    ([5, 5, 3], 1, "5/5", True),
    ([5, 5, 3], 1, "3/(5-5)", False),  # division by zero
    ([3, 2, 6], 9, "3/2*6", True),  # exact fractions in between
    ([3, 2, 6], 9, "3/(2*6)", False),
]


@pytest.mark.parametrize("numbers, target, text, expected", COUNTDOWN_CASES)
def test_countdown_verifier(numbers, target, text, expected):
    assert get_task("countdown").verify({"numbers": numbers, "target": target}, text) is expected


def test_countdown_verifier_rejects_huge_and_deep_input_quickly():
    task, problem = get_task("countdown"), {"numbers": [3, 5, 2], "target": 3}
    start = time.perf_counter()
    assert not task.verify(problem, "(" * 100_000 + "3" + ")" * 100_000)
    assert not task.verify(problem, "3+" * 100_000 + "3")
    assert not task.verify(problem, "(" * 20 + "3" + ")" * 20)  # short, but nested too deeply
    assert not task.verify(problem, "9" * 150)  # a huge literal
    assert task.verify(problem, "(" * 5 + "3" + ")" * 5)
    assert time.perf_counter() - start < 0.1


LINEAR = {"a": 3, "b": 5, "d": 0, "e": 20, "solution": 5}  # 3x + 5 = 20


@pytest.mark.parametrize(
    "text, expected",
    [("5", True), ("x = 5", True), ("x=5", True), (" 5.0 ", True), ("+5", True), ("10/2", True),
     ("5.5", False), ("6", False), ("-5", False), ("x = 5 + 0", False), ("five", False), ("", False),
     ("5e0", False), ("__import__('os')", False), ("1/0", False), ("y = 5", False)],
)  # fmt: skip
def test_linear_equation_verifier(text, expected):
    assert get_task("linear_equation").verify(LINEAR, text) is expected


def test_linear_equation_problems_hold_and_read_naturally():
    task = get_task("linear_equation", negative=True, both_sides=True)
    for p in task.generate("train", 300, seed=0):
        assert p["a"] * p["solution"] + p["b"] == p["d"] * p["solution"] + p["e"] and p["a"] != p["d"]
        assert task.verify(p, p["answer"]) and task.verify(p, f"x = {p['solution']}")
    assert any(p["solution"] < 0 for p in task.generate("train", 100, seed=0))
    texts = {p["problem"] for p in get_task("linear_equation").generate("train", 300, seed=0)}
    assert all(t.startswith("Solve for x: ") and "+ -" not in t for t in texts)
    assert LinearEquation().sample(random.Random(0))["d"] == 0  # default: x on the left only


def test_checks_write_out_the_arithmetic():
    countdown = get_task("countdown")
    problem = {"numbers": [3, 5, 2], "target": 18}
    assert countdown.check(problem, "(3+5)*2") == ("(3+5)*2 = 16, target 18", "16 is too small")
    assert countdown.check(problem, "(3+3)*2") == ("(3+3)*2 = 12, target 18", "3 is used twice but given once")
    assert countdown.check(problem, "3*5+3")[1] == "3 is used twice but given once"
    assert countdown.check({"numbers": [3, 5, 2], "target": 16}, "2*(3+5)") == ("2*(3+5) = 16, target 16", None)
    linear = get_task("linear_equation")
    assert linear.check(LINEAR, "x = 4") == ("3*4+5 = 17, right side 20", "17 is less than 20")
    assert linear.check(LINEAR, "x = 5") == ("3*5+5 = 20, right side 20", None)
    both = {"a": 5, "b": 3, "d": 2, "e": 12, "solution": 3}
    assert linear.check(both, "x = -1") == ("5*(-1)+3 = -2, 2*(-1)+12 = 10", "-2 is less than 10")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_wrong_attempts_are_distinct_and_fail_the_verifier(name):
    task, rng = get_task(name), random.Random(0)
    counts = []
    for problem in task.generate("validation", 150, seed=0):
        wrong = task.wrong_attempts(problem, rng, 3)
        counts.append(len(wrong))
        assert len(set(wrong)) == len(wrong) and problem["answer"] not in wrong
        assert not any(task.verify(problem, attempt) for attempt in wrong)
        assert all(task.check(problem, attempt)[1] for attempt in wrong)  # each has a concrete reason
        assert task.verify(problem, task.correct_attempt(problem))
    assert sum(counts) / len(counts) > 2.5  # nearly always enough distinct plausible mistakes
    assert task.wrong_attempts(task.generate("train", 1, seed=0)[0], rng, 0) == []
