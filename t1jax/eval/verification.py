"""How real a model's self-verification is: T1's trial-and-error traces only help if the checks
the model writes are right and its verdicts follow them.

For the built-in tasks every "Try: <attempt>" line can be re-checked exactly: the task writes the
check it would write itself (`Task.check`) and says whether the attempt verifies (`Task.verify`).
"""

from __future__ import annotations

from collections.abc import Sequence

from t1jax.data.tasks import Task


def audit_response(task: Task, problem: dict, response: str) -> dict[str, int]:
    """Counts for one response: attempts, checks written, checks exactly right, verdicts given,
    verdicts right ("Correct." exactly when the attempt verifies)."""
    lines = response.split("\n")
    counts = {"attempts": 0, "checks": 0, "right_checks": 0, "verdicts": 0, "right_verdicts": 0}
    for i, line in enumerate(lines):
        if not line.startswith("Try: "):
            continue
        attempt = line.removeprefix("Try: ").strip()
        counts["attempts"] += 1
        check = lines[i + 1] if i + 1 < len(lines) else ""
        if check.startswith("Check: "):
            counts["checks"] += 1
            counts["right_checks"] += check == f"Check: {task.check(problem, attempt)[0]}."
        verdict = lines[i + 2] if i + 2 < len(lines) else ""
        if verdict == "Correct." or verdict.startswith("Wrong"):
            counts["verdicts"] += 1
            counts["right_verdicts"] += (verdict == "Correct.") == task.verify(problem, attempt)
    return counts


def audit(task: Task, problems: Sequence[dict], responses: Sequence[str]) -> dict[str, float]:
    """Shares over all responses: check_accuracy (written checks with exactly the right arithmetic),
    verdict_accuracy (verdicts that match the truth), attempts_per_response."""
    total = {"attempts": 0, "checks": 0, "right_checks": 0, "verdicts": 0, "right_verdicts": 0}
    for problem, response in zip(problems, responses, strict=True):
        for key, value in audit_response(task, problem, response).items():
            total[key] += value
    return {
        "check_accuracy": total["right_checks"] / max(total["checks"], 1),
        "verdict_accuracy": total["right_verdicts"] / max(total["verdicts"], 1),
        "attempts_per_response": total["attempts"] / max(len(responses), 1),
        "checks": total["checks"],
    }
