"""Combining the ViSA agents: Shapley weights over the agents (not over examples).

Each agent's score column is first put on a common scale: multiplied by its direction (+1 when
higher is better, -1 when lower is better) and z-scored with the mean and standard deviation of a
sample. The value of a coalition ``S`` of agents is, as in the paper (REFERENCE.md section 3),

    v(S) = Pearson( mean of the z-scores of the agents in S , mean of the z-scores of all agents )

over the sample rows where every agent scored, with ``v({}) = 0``. Each agent's Shapley value

    phi_i = sum over S not containing i of |S|! (k - |S| - 1)! / k! * (v(S + i) - v(S))

is computed exactly by enumerating the ``2^k`` coalitions (k <= 12), and the weights are the
Shapley values normalised to sum to 1. The final ``visa_score`` of a row is the weighted sum of its
z-scores (see :class:`AgentWeights`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_PLAYERS = 12


def shapley_values(players: Sequence[str], value: Callable[[frozenset[str]], float]) -> dict[str, float]:
    """Exact Shapley values of a cooperative game by enumerating every coalition.

    Example:
        >>> v = {frozenset(): 0, frozenset("a"): 1, frozenset("b"): 0, frozenset("ab"): 3}
        >>> shapley_values(["a", "b"], v.__getitem__)
        {'a': 2.0, 'b': 1.0}
    """
    k = len(players)
    if not 0 < k <= MAX_PLAYERS:
        raise ValueError(f"need 1 to {MAX_PLAYERS} players, got {k}")
    if len(set(players)) != k:
        raise ValueError(f"players must be distinct: {list(players)}")
    cache: dict[frozenset[str], float] = {}

    def v(coalition: frozenset[str]) -> float:
        if coalition not in cache:
            cache[coalition] = float(value(coalition))
        return cache[coalition]

    result = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for coalition in itertools.combinations(others, size):
                base = frozenset(coalition)
                total += weight * (v(base | {player}) - v(base))
        result[player] = total
    return result


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (0 when either side is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def agreement_value(z_scores: Mapping[str, np.ndarray]) -> Callable[[frozenset[str]], float]:
    """The value function of the module docstring for z-scored columns of equal length."""
    everyone = np.mean([z_scores[name] for name in z_scores], axis=0)

    def value(coalition: frozenset[str]) -> float:
        if not coalition:
            return 0.0
        return pearson(np.mean([z_scores[name] for name in sorted(coalition)], axis=0), everyone)

    return value


@dataclass(frozen=True)
class AgentWeights:
    """Per-agent direction, sample mean and std, and Shapley weight; scores rows.

    Example:
        >>> w = AgentWeights(("a", "b"), (1, -1), (0.0, -10.0), (1.0, 2.0), (0.75, 0.25))
        >>> w.score({"a": [1.0], "b": [8.0]}).tolist()
        [1.0]
    """

    columns: tuple[str, ...]
    directions: tuple[int, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]

    def z_scores(self, table: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
        """Direction-adjusted z-scores of each agent's column (NaN and infinities become NaN)."""
        return {
            name: (d * _finite_or_nan(table[name]) - m) / s
            for name, d, m, s in zip(self.columns, self.directions, self.means, self.stds)
        }

    def score(self, table: Mapping[str, Sequence[float]]) -> np.ndarray:
        """``visa_score`` of each row: the weighted sum of z-scores (NaN when an agent is NaN)."""
        z = self.z_scores(table)
        return np.sum([w * z[name] for name, w in zip(self.columns, self.weights)], axis=0)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: {"direction": d, "mean": m, "std": s, "weight": w}
                for name, d, m, s, w in zip(self.columns, self.directions, self.means, self.stds, self.weights)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> AgentWeights:
        data = json.loads(Path(path).read_text())
        names = tuple(data)
        return cls(names, *(tuple(data[n][key] for n in names) for key in ("direction", "mean", "std", "weight")))


def fit_agent_weights(table: Mapping[str, Sequence[float]], directions: Mapping[str, int] | None = None) -> AgentWeights:
    """Shapley weights of the agents (the columns of ``table``) from a sample of scored rows.

    Rows where any agent is NaN or infinite are left out. ``directions`` maps a column to -1 when lower is better.

    Example:
        >>> rng = np.random.default_rng(0); base = rng.normal(size=200)
        >>> w = fit_agent_weights({"a": base, "b": base + rng.normal(size=200), "c": rng.normal(size=200)})
        >>> w.weights[2] < min(w.weights[:2])  # the agent that agrees with nobody weighs least
        True
    """
    columns = tuple(table)
    directions = dict(directions or {})
    unknown = set(directions) - set(columns)
    if unknown:
        raise ValueError(f"directions given for columns that are not scored: {sorted(unknown)}")
    signs = tuple(int(directions.get(name, 1)) for name in columns)
    if any(sign not in (1, -1) for sign in signs):
        raise ValueError("directions must be +1 or -1")
    matrix = np.column_stack([np.asarray(table[name], dtype=np.float64) for name in columns]) * np.asarray(signs)
    matrix = matrix[np.isfinite(matrix).all(axis=1)]
    if len(matrix) < 3:
        raise ValueError(f"need at least 3 sample rows scored by every agent, got {len(matrix)}")
    means = matrix.mean(axis=0)
    stds = matrix.std(axis=0)
    stds[stds == 0] = 1.0
    z = {name: (matrix[:, i] - means[i]) / stds[i] for i, name in enumerate(columns)}
    phi = shapley_values(columns, agreement_value(z))
    total = sum(phi.values())
    if total <= 0:
        raise ValueError(f"the Shapley values do not sum to a positive number: {phi}")
    return AgentWeights(columns, signs, tuple(map(float, means)), tuple(map(float, stds)),
                        tuple(phi[name] / total for name in columns))


def _finite_or_nan(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(array), array, np.nan)
