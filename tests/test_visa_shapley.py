"""Shapley weights over agents: exact enumeration against a hand-computed game, and the data value function."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hf_vlm_filter.visa.shapley import AgentWeights, fit_agent_weights, shapley_values

# v(S) for players A, B, C; by hand:
#   phi_A = 1/3*(1-0) + 1/6*((4-2) + (2-0)) + 1/3*(6-3) = 2
#   phi_B = 1/3*(2-0) + 1/6*((4-1) + (3-0)) + 1/3*(6-2) = 3
#   phi_C = 1/3*(0-0) + 1/6*((2-1) + (3-2)) + 1/3*(6-4) = 1
GAME = {"": 0, "A": 1, "B": 2, "C": 0, "AB": 4, "AC": 2, "BC": 3, "ABC": 6}


def test_three_player_game_matches_hand_computation():
    values = shapley_values(["A", "B", "C"], lambda s: GAME["".join(sorted(s))])
    assert values == pytest.approx({"A": 2.0, "B": 3.0, "C": 1.0}, abs=1e-12)
    assert sum(values.values()) == pytest.approx(GAME["ABC"])  # efficiency


def test_weights_use_pearson_agreement_with_the_mean_of_all_agents():
    rng = np.random.default_rng(1)
    base = rng.normal(size=300)
    table = {"sc": base + 0.3 * rng.normal(size=300), "dp": 2 * base + rng.normal(size=300) + 5,
             "pt": -(base + 0.5 * rng.normal(size=300))}
    weights = fit_agent_weights(table, directions={"pt": -1})
    # reference: z-score each direction-adjusted column, v(S) = corrcoef(mean z of S, mean z of all)
    z = {name: sign * np.asarray(col) for name, col, sign in zip(table, table.values(), (1, 1, -1))}
    z = {name: (col - col.mean()) / col.std() for name, col in z.items()}
    everyone = np.mean(list(z.values()), axis=0)

    def v(coalition):
        return np.corrcoef(np.mean([z[n] for n in coalition], axis=0), everyone)[0, 1] if coalition else 0.0

    names = list(table)
    phi = {n: 0.0 for n in names}
    for order in itertools.permutations(names):  # Shapley as the mean marginal over orderings
        for i, name in enumerate(order):
            phi[name] += (v(order[: i + 1]) - v(order[:i])) / 6
    total = sum(phi.values())
    assert weights.weights == pytest.approx(tuple(phi[n] / total for n in names), abs=1e-9)
    assert weights.directions == (1, 1, -1)
    scores = weights.score(table)
    assert np.corrcoef(scores, base)[0, 1] > 0.9


def test_nan_rows_are_left_out_of_the_fit_and_score_nan(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=50), rng.normal(size=50)
    clean = fit_agent_weights({"a": a, "b": b})
    a_nan = np.append(a, np.nan)
    b_nan = np.append(b, 7.0)
    with_nan = fit_agent_weights({"a": a_nan, "b": b_nan})
    assert with_nan == clean
    assert np.isnan(with_nan.score({"a": [np.nan], "b": [1.0]})[0])
    clean.save(tmp_path / "w.json")
    assert AgentWeights.load(tmp_path / "w.json") == clean


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        fit_agent_weights({"a": [1.0, 2.0], "b": [1.0, 3.0]})
    with pytest.raises(ValueError, match="not scored"):
        fit_agent_weights({"a": [1.0, 2.0, 3.0]}, directions={"b": -1})
    with pytest.raises(ValueError, match="distinct"):
        shapley_values(["a", "a"], lambda s: 0.0)
