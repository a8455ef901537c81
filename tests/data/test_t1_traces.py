"""T1 traces from graded attempts: the exact text, which attempts are used, reference completion,
and the same trace for the same seed."""

import random

import pytest

from t1jax.data.t1_traces import GradedAttempt, compose_trace, unbox, usable_right, usable_wrong
from t1jax.rewards import Verdict, extract_answer

WRONG_12 = GradedAttempt("3 + 4 = 12, so the answer is \\boxed{12}.", "12", Verdict.WRONG)
WRONG_9 = GradedAttempt("3 * 3 = 9. \\boxed{9}", "9", Verdict.WRONG)
WRONG_12_AGAIN = GradedAttempt("Twelve: \\boxed{ 12 }", " 12 ", Verdict.WRONG)
NO_ANSWER = GradedAttempt("I am not sure how to add these.", None, Verdict.NO_ANSWER)
RIGHT = GradedAttempt("3 + 4 = 7, so the answer is \\boxed{7}.", "7", Verdict.CORRECT)
CUT_RIGHT = GradedAttempt("3 + 4 = 7, \\boxed{7} and then on and on", "7", Verdict.CORRECT, truncated=True)
CUT_WRONG = GradedAttempt("3 + 4 = 8 and then on and on", None, Verdict.NO_ANSWER, truncated=True)
TIMED_OUT = GradedAttempt("\\boxed{7^{7^{7^7}}}", "7^{7^{7^7}}", Verdict.TIMED_OUT)

REJECT_12 = (
    "Check: this gives 12, but 12 does not match the correct answer, so this attempt has a mistake. Let me try again."
)
REJECT_9 = (
    "Check: this gives 9, but 9 does not match the correct answer, so this attempt has a mistake. Let me try again."
)
REJECT_NONE = "Check: this attempt does not reach a final answer. Let me try again."
ACCEPT_7 = "Check: this gives 7, which matches the correct answer."
FINAL_7 = "The final answer is \\boxed{7}."


class FixedDraws(random.Random):
    """An rng whose randint returns `count` and whose sample/choice keep the given order."""

    def __init__(self, count: int):
        super().__init__(0)
        self.count = count

    def randint(self, a, b):
        assert a == 0
        return min(self.count, b)

    def sample(self, population, k):
        return list(population)[:k]

    def choice(self, seq):
        return seq[0]


def test_unbox_keeps_the_content_of_every_box():
    assert unbox("so \\boxed{\\frac{1}{2}} and \\fbox{3}.") == "so \\frac{1}{2} and 3."
    assert unbox("\\boxed{\\boxed{4}} \\boxed 5") == "4 5"
    assert unbox("a \\{ b \\boxed{x\\}y} c") == "a \\{ b x\\}y c"  # escaped braces are not brackets
    assert unbox("cut: \\boxed{\\frac{1}{2") == "cut: {\\frac{1}{2"  # unclosed: the command goes
    assert unbox("\\boxedfoo{1}") == "\\boxedfoo{1}"  # another command
    assert unbox("no box") == "no box"


def test_a_trace_with_two_wrong_attempts_has_the_exact_shape():
    trace = compose_trace([WRONG_12, NO_ANSWER, RIGHT], "7", FixedDraws(2), max_wrong=2)
    assert trace.text == (
        "3 + 4 = 12, so the answer is 12.\n" + REJECT_12 + "\n\n"
        "I am not sure how to add these.\n" + REJECT_NONE + "\n\n"
        "3 + 4 = 7, so the answer is 7.\n" + ACCEPT_7 + "\n\n" + FINAL_7
    )
    assert trace.num_wrong == 2 and not trace.from_reference
    # The one box is the last line's: what the grader and inference scaling read.
    assert trace.text.count("\\boxed{") == 1 and extract_answer(trace.text) == "7"


def test_max_wrong_caps_the_wrong_attempts_and_zero_gives_the_right_one_alone():
    attempts = [WRONG_12, WRONG_9, NO_ANSWER, RIGHT]
    one = compose_trace(attempts, "7", FixedDraws(3), max_wrong=1)
    assert one.text == "3 + 4 = 12, so the answer is 12.\n" + REJECT_12 + "\n\n3 + 4 = 7, so the answer is 7.\n" + (
        ACCEPT_7 + "\n\n" + FINAL_7
    )
    none = compose_trace(attempts, "7", FixedDraws(3), max_wrong=0)
    assert none.text == "3 + 4 = 7, so the answer is 7.\n" + ACCEPT_7 + "\n\n" + FINAL_7 and none.num_wrong == 0


def test_which_attempts_are_used():
    attempts = [CUT_WRONG, WRONG_12, TIMED_OUT, WRONG_12_AGAIN, CUT_RIGHT, NO_ANSWER, WRONG_9, RIGHT]
    # cut off or ungraded: never; the same wrong answer (up to spaces): once
    assert usable_wrong(attempts) == [WRONG_12, NO_ANSWER, WRONG_9]
    assert usable_right(attempts) == [RIGHT]
    # Over many draws every usable wrong attempt appears, in any order, and nothing else does.
    seen = set()
    for seed in range(200):
        trace = compose_trace(attempts, "7", random.Random(seed), max_wrong=3)
        blocks = trace.text.split("\n\n")
        assert len(blocks) == trace.num_wrong + 2 and 0 <= trace.num_wrong <= 3
        assert blocks[-2:] == ["3 + 4 = 7, so the answer is 7.\n" + ACCEPT_7, FINAL_7]
        seen.update(blocks[:-2])
        assert len(set(blocks[:-2])) == trace.num_wrong
    assert seen == {
        "3 + 4 = 12, so the answer is 12.\n" + REJECT_12,
        "I am not sure how to add these.\n" + REJECT_NONE,
        "3 * 3 = 9. 9\n" + REJECT_9,
    }


def test_no_trace_without_a_usable_right_attempt():
    assert compose_trace([WRONG_12, NO_ANSWER], "7", random.Random(0)) is None
    assert compose_trace([CUT_RIGHT, TIMED_OUT, WRONG_9], "7", random.Random(0)) is None
    assert compose_trace([], "7", random.Random(0)) is None
    assert compose_trace([RIGHT], "7", random.Random(0), reference="  ") is not None  # a right attempt suffices


def test_the_reference_solution_completes_a_problem_with_no_right_attempt():
    reference = "Adding, $3 + 4 = 7$, so the sum is $\\boxed{7}$."
    trace = compose_trace([WRONG_9, CUT_RIGHT], "7", FixedDraws(1), max_wrong=2, reference=reference)
    assert trace.text == (
        "3 * 3 = 9. 9\n" + REJECT_9 + "\n\nAdding, $3 + 4 = 7$, so the sum is $7$.\n" + ACCEPT_7 + "\n\n" + FINAL_7
    )
    assert trace.from_reference and trace.num_wrong == 1
    # A right attempt of the model's own wins over the reference.
    own = compose_trace([WRONG_9, RIGHT], "7", FixedDraws(0), reference=reference)
    assert own.text == "3 + 4 = 7, so the answer is 7.\n" + ACCEPT_7 + "\n\n" + FINAL_7 and not own.from_reference


def test_the_right_check_names_the_attempts_own_answer_and_the_final_line_the_reference_answer():
    half = GradedAttempt("so \\boxed{0.5}", "0.5", Verdict.CORRECT)
    trace = compose_trace([half], "\\frac{1}{2}", random.Random(0))
    assert trace.text == "so 0.5\nCheck: this gives 0.5, which matches the correct answer.\n\n" + (
        "The final answer is \\boxed{\\frac{1}{2}}."
    )


def test_the_same_seed_gives_the_same_trace():
    attempts = [WRONG_12, WRONG_9, NO_ANSWER, RIGHT, GradedAttempt("7 it is: \\boxed{7}", "7", Verdict.CORRECT)]
    traces = {seed: compose_trace(attempts, "7", random.Random(seed), max_wrong=3).text for seed in range(30)}
    assert all(compose_trace(attempts, "7", random.Random(s), max_wrong=3).text == t for s, t in traces.items())
    assert len(set(traces.values())) > 5  # and other seeds give other traces


def test_negative_max_wrong_is_refused():
    with pytest.raises(ValueError, match="max_wrong must be >= 0"):
        compose_trace([RIGHT], "7", random.Random(0), max_wrong=-1)
