"""Untrusted model output through the grader: huge numbers, towers, factorials, deep nesting,
junk, injected code, bad types, hung and crashing workers, calls from other threads."""

import os
import random
import sys
import threading
import time

import pytest

from t1jax.rewards import Grader, Verdict, extract_answer, grade, grade_batch, grade_verdict, is_equivalent

GOLDS = ["1", "0", "\\frac{1}{2}", "x^2+1", "(1, 2)", "\\sqrt{2}", "10", "2, 3"]


def _injections(marker: str) -> list[str]:
    touch = f"__import__('os').system('touch {marker}')"
    return [
        touch,
        f'eval("{touch}")',
        f"exec('import os; os.system(\"touch {marker}\")')",
        f"(lambda: {touch})()",
        f"().__class__.__bases__[0].__subclasses__(); {touch}",
        f"Symbol('x') + sympify(\"{touch}\")",
        f"{{{touch}}}",
        f"\\text{{{touch}}}",
        f"x = {touch}",
        f"1 + {touch}",
    ]


def _adversarial(rng: random.Random, marker: str) -> list[str]:
    """1,000 hostile answers, reproducible from the seed."""
    fixed = [
        "10^{10^{10^{10}}}",
        "9!!!!!!",
        "(10^{100})!",
        "10^{10}!",
        "2^{2^{2^{2^{2^{2}}}}}",
        "\\pi^{\\pi^{\\pi^{\\pi}}}",
        "e^{e^{e^{e^{e}}}}",
        "x^{x^{x^{x^{x}}}}",
        "\\binom{10^{9}}{5 \\cdot 10^{8}}",
        "1e999999",
        "(2^{60000})^{2}",
        "\\sqrt[10^{9}]{2}",
        "\\sin(10^{10^{5}})",
        "\\frac{1}{0}",
        "0^{-1}",
        "\\log 0",
        "\\infty - \\infty",
        "\\begin{pmatrix}" + "1 & " * 200 + "1\\end{pmatrix}",
        "a" * 100_000,
        "\\boxed{" * 15_000,
        "{" * 100_000,
        "1+" * 50_000 + "1",
        "(" * 50_000 + "1" + ")" * 50_000,
        "\\frac{" * 20_000,
        "\\left(" * 30_000,
        "\\\\" * 50_000,
        "\x00" * 1000,
        "",
        " ",
        "\\boxed{}",
    ]
    out = list(fixed) + _injections(marker)
    while len(out) < 1000:
        kind = rng.randrange(9)
        if kind == 0:  # enormous literals and powers
            out.append(rng.choice(["", "-"]) + "".join(rng.choice("0123456789") for _ in range(rng.randint(50, 999))))
        elif kind == 1:  # power towers
            height = rng.randint(2, 30)
            out.append("^".join(str(rng.randint(2, 99)) for _ in range(height)))
        elif kind == 2:  # factorial chains
            out.append(f"{rng.randint(2, 10**6)}" + "!" * rng.randint(1, 12))
        elif kind == 3:  # deep nesting
            depth = rng.randint(30, 400)
            opener, closer = rng.choice([("(", ")"), ("{", "}"), ("\\sqrt{", "}"), ("\\frac{1}{", "}"), ("[", "]")])
            out.append(opener * depth + "1" + closer * depth)
        elif kind == 4:  # unbalanced brackets and stray commands
            out.append("".join(rng.choice("{}()[]\\|^_&$%!,.=<> 0123456789xefrac") for _ in range(rng.randint(1, 300))))
        elif kind == 5:  # binary junk
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 500))).decode("latin-1"))
        elif kind == 6:  # random unicode
            out.append("".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randint(1, 200))))
        elif kind == 7:  # huge exponents and big sums of factorials
            out.append(f"{rng.randint(2, 9)}^{{{rng.randint(10**4, 10**12)}}}")
        else:
            out.append(" + ".join(f"{rng.randint(1000, 5000)}!" for _ in range(rng.randint(2, 40))))
    wrapped = []
    for i, answer in enumerate(out):  # the ways a response can present an answer
        style = i % 4
        if style == 0:
            wrapped.append(f"Reasoning... so the answer is $\\boxed{{{answer}}}$.")
        elif style == 1:
            wrapped.append(f"Try: something\nFinal answer: {answer}")
        elif style == 2:
            wrapped.append(f"Work.\n#### {answer}")
        else:
            wrapped.append(answer)
    return wrapped


def test_adversarial_batch(tmp_path):
    marker = tmp_path / f"pwned_{os.getpid()}_{random.Random().getrandbits(32)}"
    responses = _adversarial(random.Random(1234), str(marker))
    assert len(responses) == 1000
    golds = [GOLDS[i % len(GOLDS)] for i in range(len(responses))]
    start = time.perf_counter()
    with Grader(workers=2, timeout_s=3.0) as grader:
        result = grader.grade_batch(responses, golds)
        after = grader.grade_batch(["\\boxed{\\frac12}", "#### 7"], ["0.5", "7"])
    elapsed = time.perf_counter() - start
    assert len(result) == 1000
    assert all(isinstance(v, Verdict) for v in result.verdicts)
    assert result.counts["error"] == 0, result.counts  # only non-strings may be errors
    assert result.counts["correct"] < 20, result.counts  # a few nested "((1))" are genuinely 1
    assert after.verdicts == (Verdict.CORRECT, Verdict.CORRECT)
    assert elapsed < 240, (elapsed, result.counts)
    assert not marker.exists()
    for injection in _injections(str(marker)):
        assert not grade(f"\\boxed{{{injection}}}", "0")
        assert not is_equivalent(injection, injection + "1")
    assert not marker.exists()


@pytest.mark.parametrize("bad", [None, 5, 1.5, b"1", ["1"], {"a": 1}, object()])
def test_bad_types_raise_type_error(bad):
    with pytest.raises(TypeError):
        grade(bad, "1")
    with pytest.raises(TypeError):
        grade("\\boxed{1}", bad)
    with pytest.raises(TypeError):
        is_equivalent(bad, "1")
    with pytest.raises(TypeError):
        is_equivalent("1", bad)
    with pytest.raises(TypeError):
        extract_answer(bad)


def test_empty_strings_are_wrong_not_errors():
    assert not grade("", "1")
    assert not is_equivalent("", "")
    assert not is_equivalent("1", "")
    assert grade_verdict("", "1") is Verdict.NO_ANSWER


def test_batch_bad_inputs_are_error_verdicts():
    responses = [None, 5, b"\\boxed{1}", "\\boxed{1}", ["x"], "\\boxed{2}", "nothing"]
    golds = ["1", "1", "1", "1", "1", None, "1"]
    result = grade_batch(responses, golds, timeout_s=5.0, workers=1)
    assert result.verdicts == (
        Verdict.ERROR,
        Verdict.ERROR,
        Verdict.ERROR,
        Verdict.CORRECT,
        Verdict.ERROR,
        Verdict.ERROR,
        Verdict.NO_ANSWER,
    )
    assert result.counts == {"correct": 1, "wrong": 0, "no_answer": 1, "timed_out": 0, "error": 5}
    assert result.correct.tolist() == [False, False, False, True, False, False, False]


def hanging_or_crashing_grade(response: str, gold: str):
    """A grading function for the tests: "hang" never returns, "crash" kills its worker."""
    if response == "hang":
        time.sleep(3600)
    if response == "crash":
        os._exit(3)
    if response == "hog":
        return len(bytearray(1 << 30)) == 0  # 1 GiB, over the test's memory cap
    return grade_verdict(response, gold)


# A replaced worker's start-up counts against the next item's timeout: 3 s keeps the tests right on
# a loaded machine, where 0.5 s timed the good items out too.
TIMEOUT_WITH_RESTARTS = 3.0


def test_timeout_kills_only_the_hung_item():
    with Grader(workers=1, timeout_s=TIMEOUT_WITH_RESTARTS, grade_fn=hanging_or_crashing_grade) as grader:
        start = time.perf_counter()
        result = grader.grade_batch(["hang", "\\boxed{1}", "hang", "#### 2"], ["1", "1", "1", "2"])
        elapsed = time.perf_counter() - start
        assert result.verdicts == (Verdict.TIMED_OUT, Verdict.CORRECT, Verdict.TIMED_OUT, Verdict.CORRECT)
        assert grader.restarts == 2
        assert elapsed < 30
        assert grader.grade_batch(["\\boxed{3}"], ["3"]).verdicts == (Verdict.CORRECT,)


def test_crashing_worker_is_replaced():
    with Grader(workers=2, timeout_s=10.0, grade_fn=hanging_or_crashing_grade) as grader:
        result = grader.grade_batch(["crash", "\\boxed{1}", "\\boxed{5}"], ["1", "1", "4"])
        assert result.verdicts == (Verdict.ERROR, Verdict.CORRECT, Verdict.WRONG)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is only relied on under Linux")
def test_memory_hog_is_an_error_not_a_dead_pool():
    with Grader(workers=1, timeout_s=10.0, memory_limit_mb=256, grade_fn=hanging_or_crashing_grade) as grader:
        result = grader.grade_batch(["hog", "\\boxed{1}"], ["1", "1"])
        assert result.verdicts == (Verdict.ERROR, Verdict.CORRECT)


def test_grader_from_a_non_main_thread():
    results = {}

    def work():
        with Grader(workers=1, timeout_s=TIMEOUT_WITH_RESTARTS, grade_fn=hanging_or_crashing_grade) as grader:
            results["batch"] = grader.grade_batch(["hang", "\\boxed{x+1}"], ["1", "1+x"])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert results["batch"].verdicts == (Verdict.TIMED_OUT, Verdict.CORRECT)


def test_one_grader_shared_by_threads():
    with Grader(workers=2, timeout_s=5.0) as grader:
        outputs = [None] * 4

        def work(k):
            outputs[k] = grader.grade_batch([f"\\boxed{{{k}}}", "\\boxed{0}"], [str(k), "1"])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [o.verdicts for o in outputs] == [(Verdict.CORRECT, Verdict.WRONG)] * 4


def test_closed_grader_refuses_work():
    grader = Grader(workers=1)
    grader.close()
    with pytest.raises(Exception, match="closed"):
        grader.grade_batch(["\\boxed{1}"], ["1"])
