"""task_reward: the built-in tasks' own verifiers, fed the final answer of a response."""

import random

import pytest

from t1jax.data.synthesis import synthesize_trace
from t1jax.data.tasks import TASKS, get_task
from t1jax.rewards import task_reward


@pytest.mark.parametrize("name", sorted(TASKS))
def test_synthesized_traces_are_rewarded(name):
    task = get_task(name)
    rng = random.Random(0)
    for problem in task.generate("test", 20, seed=0):
        trace = synthesize_trace(task, problem, rng)
        assert task_reward(task, problem, trace)
        assert task_reward(name, problem, trace)  # a task name works too


@pytest.mark.parametrize("name", sorted(TASKS))
def test_wrong_or_missing_answers_are_not(name):
    task = get_task(name)
    rng = random.Random(1)
    for problem in task.generate("test", 20, seed=1):
        for wrong in task.wrong_attempts(problem, rng, 2):
            assert not task_reward(task, problem, f"Try: {wrong}\nFinal answer: {wrong}")
        assert not task_reward(task, problem, f"Try: {task.correct_attempt(problem)}\nCorrect.")  # no final line
        assert not task_reward(task, problem, "Final answer: " + "(" * 10_000)
        assert not task_reward(task, problem, "Final answer: __import__('os').system('true')")


def test_bad_response_type():
    task = get_task("linear_equation")
    problem = task.generate("test", 1, seed=0)[0]
    with pytest.raises(TypeError):
        task_reward(task, problem, None)
