"""visa_select (budget / threshold, Dataset / IterableDataset) and the visa-select CLI subcommand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from hf_vlm_filter.cli import main
from hf_vlm_filter.visa import AGENT_COLUMNS, fit_agent_weights, visa_select


def scored_table(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    quality = rng.normal(size=n)
    columns = {name: (quality + rng.normal(scale=0.5 + k, size=n)).astype(np.float32)
               for k, name in enumerate(AGENT_COLUMNS)}
    columns["pt_score"][3] = np.nan  # an unscored row never gets selected
    return Dataset.from_dict({"id": list(range(n)), **columns})


def test_budget_keeps_the_exact_top_fraction_in_order():
    ds = scored_table()
    picked = visa_select(ds, fraction=0.25, sample_size=40)
    weights = fit_agent_weights({c: ds[c] for c in AGENT_COLUMNS})
    assert picked.weights == weights
    scores = weights.score({c: ds[c] for c in AGENT_COLUMNS})
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[: round(0.25 * 39)]
    assert picked.dataset["id"] == sorted(order.tolist())
    np.testing.assert_allclose(picked.dataset["visa_score"], scores[sorted(order)], rtol=1e-6)
    assert picked.threshold == pytest.approx(min(picked.dataset["visa_score"]))


def test_threshold_on_stream_equals_dataset():
    ds = scored_table()
    on_dataset = visa_select(ds, threshold=0.2, sample_size=40)
    on_stream = visa_select(ds.to_iterable_dataset(num_shards=2), threshold=0.2, weights=on_dataset.weights)
    assert [row["id"] for row in on_stream.dataset] == on_dataset.dataset["id"]
    assert all(s >= 0.2 for s in on_dataset.dataset["visa_score"]) and 3 not in on_dataset.dataset["id"]
    # a streaming budget cuts at the sample's quantile
    budget = visa_select(ds.to_iterable_dataset(), fraction=0.5, weights=on_dataset.weights, sample_size=40)
    kept = [row["visa_score"] for row in budget.dataset]
    assert len(kept) == 20 and min(kept) >= budget.threshold


def test_bad_arguments():
    ds = scored_table()
    with pytest.raises(ValueError, match="exactly one"):
        visa_select(ds, fraction=0.5, threshold=1.0)
    with pytest.raises(ValueError, match="fraction"):
        visa_select(ds, fraction=1.5)
    with pytest.raises(KeyError, match="run the agents first"):
        visa_select(ds.remove_columns("sc_score"), fraction=0.5)


def test_cli_subcommand(tmp_path, capsys):
    ds = scored_table()
    ds.to_parquet(str(tmp_path / "scored.parquet"))
    out = tmp_path / "out"
    assert main(["visa-select", str(tmp_path / "scored.parquet"), "--out", str(out), "--fraction", "0.25",
                 "--sample-size", "40"]) == 0
    kept = Dataset.from_parquet(str(out / "data.parquet"))
    assert kept["id"] == visa_select(ds, fraction=0.25, sample_size=40).dataset["id"]
    weights = json.loads((out / "visa_weights.json").read_text())
    assert set(weights) == set(AGENT_COLUMNS) and sum(w["weight"] for w in weights.values()) == pytest.approx(1)
    assert "kept 10 of 40 rows" in capsys.readouterr().out
    # reuse the weights with a threshold and a lower-is-better column
    assert main(["visa-select", str(tmp_path / "scored.parquet"), "--out", str(tmp_path / "o2"),
                 "--threshold", "0", "--weights", str(out / "visa_weights.json")]) == 0
    assert main(["visa-select", str(tmp_path / "scored.parquet"), "--out", str(tmp_path / "o3"),
                 "--fraction", "0.5", "--column", "sc_score", "--column", "pt_score",
                 "--lower-is-better", "pt_score"]) == 0
    assert main(["visa-select", str(tmp_path / "scored.parquet"), "--out", str(tmp_path / "o4")]) == 2
