"""The path-star task: well-formed graphs, an exact path verifier, wrong branches as mistakes."""

import random

import pytest

from t1jax.data.tasks import get_task
from t1jax.data.tasks.graph_path import parse_path
from t1jax.errors import ConfigError

# A hand-made problem: start 10, branches 10>11>12, 10>21>22, 10>31>32; target 22.
PROBLEM = {  # labels above 9 are allowed with a larger max_label
    "edges": [(11, 12), (10, 21), (10, 11), (21, 22), (10, 31), (31, 32)],
    "start": 10,
    "target": 22,
    "answer": "10>21>22",
}


def test_graphs_are_stars_with_one_path_to_the_target():
    knobs = {"branches": 5, "depth": 3, "max_label": 30}
    task = get_task("graph_path", **knobs)
    for problem in task.generate("train", 50, seed=0):
        edges = [tuple(e) for e in problem["edges"]]
        assert len(edges) == 5 * 3 and len(set(edges)) == len(edges)
        out = {a for a, _ in edges}
        assert sum(a == problem["start"] for a, _ in edges) == 5  # the branches leave the start
        heads = [b for _, b in edges]
        assert len(set(heads)) == len(heads)  # every node has one way in: paths are unique
        assert problem["target"] not in out  # the target ends a branch
        # Walking back from the target reaches the start in `depth` edges, and that walk is the answer.
        parent = {b: a for a, b in edges}
        walk = [problem["target"]]
        while walk[-1] != problem["start"]:
            walk.append(parent[walk[-1]])
        assert ">".join(map(str, reversed(walk))) == problem["answer"] and len(walk) == 4
        assert task.verify(problem, problem["answer"])
        listed = problem["problem"]
        assert all(f"{a}>{b}" in listed for a, b in edges)
        assert listed.endswith(f"Find a path from {problem['start']} to {problem['target']}.")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10>21>22", True),
        (" 10 > 21 > 22 ", True),
        ("10>11>12", False),  # another branch
        ("10>22", False),  # not an edge
        ("21>22", False),  # does not start at the start
        ("10>21", False),  # stops early
        ("10>21>22>23", False),
        ("10>21>>22", False),
        ("x = 22", False),
        ("", False),
    ],
)
def test_verifier(text, expected):
    assert get_task("graph_path").verify(PROBLEM, text) is expected


def test_check_and_reasons():
    task = get_task("graph_path")
    assert task.check(PROBLEM, "10>21>22") == ("it ends at 22, target 22", None)
    assert task.check(PROBLEM, "10>11>12") == ("it ends at 12, target 22", "12 is not 22")
    assert task.check(PROBLEM, "10>22")[1] == "10>22 is not an edge"
    assert task.check(PROBLEM, "11>12")[1] == "it starts at 11, not 10"
    assert task.check(PROBLEM, "left")[1] == "it is not a path"


def test_wrong_attempts_are_the_other_whole_branches():
    task = get_task("graph_path")
    wrong = task.wrong_attempts(PROBLEM, random.Random(0), 5)
    assert sorted(wrong) == ["10>11>12", "10>31>32"]
    assert len(task.wrong_attempts(PROBLEM, random.Random(0), 1)) == 1


def test_parse_path_and_bad_knobs():
    assert parse_path("3>14>15") == [3, 14, 15]
    assert parse_path("3>") is None and parse_path("3>1e5") is None
    assert parse_path(">".join(["1"] * 100)) is None  # bounded length
    with pytest.raises(ConfigError, match="branches >= 2"):
        get_task("graph_path", branches=1)
    with pytest.raises(ConfigError, match="branches \\* depth \\+ 1 <= max_label \\+ 1"):
        get_task("graph_path", branches=5, depth=2)
