"""Teacher-forced check accuracy: where check results are, and exact scoring with known predictors."""

import numpy as np
import pytest

from t1jax import config as config_lib
from t1jax.data.tasks import get_task
from t1jax.data.tokenizer import Tokenizer
from t1jax.eval.forced_checks import check_results, forced_check_accuracy, validation_traces


def test_check_results_of_each_trace_format():
    linear = "Try: x = 20\nCheck: 5*20+9 = 109, right side 104.\nWrong, because 109 is more than 104.\nFinal answer: 19"
    assert check_results(linear) == [("x = 20", linear.index("109"), "109")]
    countdown = "Try: 9*(10-6)\nCheck: 9*(10-6) = 36, target 36.\nCorrect."
    assert check_results(countdown) == [("9*(10-6)", countdown.index("36"), "36")]
    graph = (
        "Try: 3>5>0\nCheck: it ends at 0, target 1.\nWrong, because 0 is not 1.\n"
        "Try: 3>8>1\nCheck: it ends at 1, target 1."
    )
    second = graph.index("ends at 1") + len("ends at ")
    assert check_results(graph) == [("3>5>0", graph.index("at 0") + 3, "0"), ("3>8>1", second, "1")]
    assert check_results("Check: 1+1 = 2, target 2.") == []  # no attempt before it


@pytest.fixture(scope="module")
def traces_and_tokenizer():
    task = get_task("linear_equation")
    config = config_lib.load(None, {"sft.task": "linear_equation", "sft.max_failed": 3, "sft.retry_prob": 0.75})
    traces = validation_traces(config, task, 40)
    tokenizer = Tokenizer.train((t[k] for t in traces for k in ("prompt", "response")), vocab_size=400)
    return task, traces, tokenizer


def test_a_perfect_predictor_scores_every_check_and_a_shifted_one_none(traces_and_tokenizer):
    task, traces, tokenizer = traces_and_tokenizer

    def oracle(ids):  # the true next token at every position
        return np.asarray(ids[1:] + [0])

    result = forced_check_accuracy(task, traces, tokenizer, oracle)
    # Every synthesized trace has exactly one right attempt, its last.
    wrong = sum(t["response"].count("Try: ") - 1 for t in traces)
    scored = result["right_attempt_checks"] + result["wrong_attempt_checks"] + result["skipped_checks"]
    assert scored == len(traces) + wrong
    assert result["right_attempt_checks"] > 0.6 * len(traces) and result["wrong_attempt_checks"] > 0.6 * wrong
    assert result["right_attempt_accuracy"] == result["wrong_attempt_accuracy"] == 1.0

    def echo(ids):  # the current token instead of the next: a result is never two equal tokens in a row
        return np.asarray(ids)

    echoed = forced_check_accuracy(task, traces, tokenizer, echo)
    assert echoed["right_attempt_accuracy"] == echoed["wrong_attempt_accuracy"] == 0.0


def test_a_predictor_that_copies_the_right_hand_side_is_right_only_on_right_attempts(traces_and_tokenizer):
    task, traces, tokenizer = traces_and_tokenizer
    copies, kept = {}, []
    for trace in traces:  # the trace with every check's result replaced by the right-hand side
        lines = trace["response"].split("\n")
        for i, line in enumerate(lines):
            if line.startswith("Check: "):
                head, rhs = line.removesuffix(".").split(", right side ")
                lines[i] = f"{head.rsplit(' ', 1)[0]} {rhs}, right side {rhs}."
        real = tokenizer.encode_prompt(trace["prompt"]) + tokenizer.encode_response(trace["response"])
        copy = tokenizer.encode_prompt(trace["prompt"]) + tokenizer.encode_response("\n".join(lines))
        if len(copy) == len(real):  # results as long as the right-hand side: positions line up
            copies[tuple(real)] = copy
            kept.append(trace)
    assert len(kept) > 10

    def copier(ids):  # the copied trace's next token at every position of the real one
        return np.asarray(copies[tuple(ids)][1:] + [0])

    result = forced_check_accuracy(task, kept, tokenizer, copier)
    assert result["right_attempt_checks"] > 10 and result["wrong_attempt_checks"] > 10
    assert result["right_attempt_accuracy"] == 1.0
    # a*x + b equals the right-hand side only for the right x, so a copied result is always wrong
    assert result["wrong_attempt_accuracy"] == 0.0
