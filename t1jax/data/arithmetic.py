"""A built-in task small enough for a laptop: column addition with the carries written out."""

from __future__ import annotations

import random


def addition_example(rng: random.Random, max_digits: int = 3) -> dict:
    """{prompt, response, answer}: the response adds digit by digit, then states the answer."""
    a = rng.randrange(10 ** rng.randint(1, max_digits))
    b = rng.randrange(10 ** rng.randint(1, max_digits))
    steps, carry = [], 0
    da, db = str(a)[::-1], str(b)[::-1]
    for i in range(max(len(da), len(db))):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}, write {total % 10} carry {total // 10}.")
        carry = total // 10
    return {"prompt": f"Add {a} and {b}.\n", "response": " ".join(steps) + f"\nAnswer: {a + b}", "answer": str(a + b)}


def addition_dataset(num_examples: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [addition_example(rng) for _ in range(num_examples)]
