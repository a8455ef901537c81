"""Path finding in a star graph: from the centre, several branches lead away; find the one that ends
at the target.

This is the path-star task used to study planning with next-token prediction (Bachmann and
Nagarajan, 2024): checking an attempt means following edges forward, a lookup in the prompt with
no arithmetic, while picking the right first edge means chaining backwards from the target. So
checking is easier than solving, the regime where T1's trial-and-error with self-verification
pays off and a longer reasoning budget (more branches tried) buys accuracy. (The demo's 1M-
parameter model does not learn the lookups within its few-minute SFT budget; see
docs/results/2026-12-03-tried-and-failed.md.)

Nodes are numbers 0..max_label; with the default single digits every node is one token, so
following an edge is a one-token lookup. Answers are paths "1>4>7", read by a small parser: model
text is never evaluated.
"""

from __future__ import annotations

import dataclasses
import random
import re

from t1jax.data.tasks.base import Task
from t1jax.errors import ConfigError

_PATH = re.compile(r"\d{1,6}(?:\s*>\s*\d{1,6}){0,64}")


def parse_path(text: str) -> list[int] | None:
    """[12, 45, 67] for "12>45>67" (spaces around ">" allowed), else None."""
    text = text.strip()
    if not _PATH.fullmatch(text):
        return None
    return [int(node) for node in text.split(">")]


def render_path(nodes: list[int]) -> str:
    return ">".join(map(str, nodes))


@dataclasses.dataclass(frozen=True)
class GraphPathKnobs:
    branches: int = 4  # edges leaving the start node
    depth: int = 2  # nodes on each branch after the start
    max_label: int = 9  # nodes are distinct numbers 0..max_label

    def __post_init__(self):
        if self.branches < 2 or self.depth < 1 or self.branches * self.depth + 1 > self.max_label + 1:
            raise ConfigError(
                f"graph_path: need branches >= 2, depth >= 1 and branches * depth + 1 <= max_label + 1 nodes; {self}"
            )


class GraphPath(Task):
    name = "graph_path"
    Knobs = GraphPathKnobs

    def sample(self, rng: random.Random) -> dict | None:
        k = self.knobs
        nodes = rng.sample(range(k.max_label + 1), k.branches * k.depth + 1)
        start, rest = nodes[0], nodes[1:]
        chains = [rest[i * k.depth : (i + 1) * k.depth] for i in range(k.branches)]
        edges = [(a, b) for chain in chains for a, b in zip([start, *chain], chain)]
        rng.shuffle(edges)
        solution = [start, *chains[rng.randrange(k.branches)]]
        target = solution[-1]
        listed = ",".join(f"{a}>{b}" for a, b in edges)
        return {
            "problem": f"Edges: {listed}. Find a path from {start} to {target}.",
            "answer": render_path(solution),
            "edges": edges,
            "start": start,
            "target": target,
        }

    def canonical_key(self, problem: dict) -> str:
        edges = ",".join(f"{a}>{b}" for a, b in sorted(map(tuple, problem["edges"])))
        return f"{edges}:{problem['start']}>{problem['target']}"

    def prompt(self, problem: dict) -> str:
        return problem["problem"] + "\n"

    def verify(self, problem: dict, answer_text: str) -> bool:
        """True iff the text is a path of listed edges from the start to the target."""
        nodes = parse_path(answer_text)
        return nodes is not None and self._fault(problem, nodes) is None

    def correct_attempt(self, problem: dict) -> str:
        return problem["answer"]

    def wrong_attempts(self, problem: dict, rng: random.Random, n: int) -> list[str]:
        """The natural mistake: a whole branch that ends somewhere else."""
        start = problem["start"]
        following = {a: b for a, b in map(tuple, problem["edges"]) if a != start}  # one way on, off the centre
        paths = []
        for first in (b for a, b in map(tuple, problem["edges"]) if a == start):
            path = [start, first]
            while path[-1] in following:
                path.append(following[path[-1]])
            if path[-1] != problem["target"]:
                paths.append(render_path(path))
        return rng.sample(sorted(paths), min(n, len(paths)))

    def check(self, problem: dict, attempt: str) -> tuple[str, str | None]:
        nodes = parse_path(attempt)
        if nodes is None:
            return f"{attempt} is not a path", "it is not a path"
        return f"it ends at {nodes[-1]}, target {problem['target']}", self._fault(problem, nodes)

    def _fault(self, problem: dict, nodes: list[int]) -> str | None:
        """Why `nodes` is not a solution, or None."""
        edges = set(map(tuple, problem["edges"]))
        if nodes[0] != problem["start"]:
            return f"it starts at {nodes[0]}, not {problem['start']}"
        for a, b in zip(nodes, nodes[1:]):
            if (a, b) not in edges:
                return f"{a}>{b} is not an edge"
        if nodes[-1] != problem["target"]:
            return f"{nodes[-1]} is not {problem['target']}"
        return None
