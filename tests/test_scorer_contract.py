"""One contract suite over the registry: every registered scorer, built from tiny checkpoints, keeps
the promises of :mod:`hf_vlm_filter.scorers.base` — pickles to its config, has a stable fingerprint
that its options change, writes exactly its declared schema, names a missing column, turns a hostile
row into NaN + a reason, and gives the same scores across batch sizes and when streamed."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from datasets import Dataset
from datasets.fingerprint import Hasher

from hf_vlm_filter import map_with_scorer
from hf_vlm_filter.scorers.batching import batch_size
from hf_vlm_filter.scorers.registry import SCORERS
from hf_vlm_filter.testing import SCORER_CASES

NAMES = list(SCORERS)
ROWS = 6


def test_every_registered_scorer_has_a_case():
    assert sorted(SCORER_CASES) == sorted(SCORERS)


@pytest.fixture(scope="module")
def scorers(tiny_checkpoints):
    return {name: SCORER_CASES[name].build(tiny_checkpoints) for name in NAMES}


@pytest.fixture(scope="module")
def reference(scorers):
    """Each scorer's columns for the case's rows, one ``map`` batch of all rows."""
    out = {}
    for name in NAMES:
        rows = Dataset.from_dict(SCORER_CASES[name].rows(ROWS))
        out[name] = map_with_scorer(rows, scorers[name], batch_size=ROWS)
    return out


def score_columns(scorer) -> list[str]:
    return [spec.column for spec in scorer.score_specs]


@pytest.mark.parametrize("name", NAMES)
def test_pickles_to_its_config_and_scores_the_same_after(name, scorers):
    scorer = scorers[name]
    assert type(scorer) is SCORERS[name] and SCORERS[name].name == name
    state = scorer.__getstate__()
    assert set(state) <= {"config", "checkpoint"} and len(pickle.dumps(scorer)) < 1000
    assert ("checkpoint" in state) == scorer.has_model()
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone.config == scorer.config and type(clone) is type(scorer)
    assert isinstance(clone.config, SCORERS[name].config_class)
    assert Hasher.hash(clone) == Hasher.hash(type(scorer).from_config(scorer.config))
    changed = next(iter(SCORER_CASES[name].changed_option.items()))
    assert getattr(clone.with_options(**dict([changed])).config, changed[0]) == changed[1]
    batch = SCORER_CASES[name].rows(3)
    for column in score_columns(scorer):
        np.testing.assert_allclose(clone(batch)[column], scorer(batch)[column], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_fingerprint_is_stable_and_follows_the_options(name, scorers, tiny_checkpoints):
    case = SCORER_CASES[name]
    first, again = scorers[name], case.build(tiny_checkpoints)
    first(case.rows(2))  # a loaded model must not change the fingerprint
    assert Hasher.hash(first) == Hasher.hash(again)
    assert Hasher.hash(first) != Hasher.hash(case.build(tiny_checkpoints, **case.changed_option))


@pytest.mark.parametrize("name", NAMES)
def test_writes_its_declared_schema_and_scores_in_range(name, scorers, reference):
    scorer, scored = scorers[name], reference[name]
    rows = Dataset.from_dict(SCORER_CASES[name].rows(ROWS))
    declared = scorer.output_features(rows.features)
    assert scored.features == declared
    for spec in scorer.score_specs:
        assert (declared[spec.column].dtype, declared[spec.error_column].dtype) == ("float32", "string")
    assert [spec.column for spec in scorer.score_specs] == [c for c in declared if c in score_columns(scorer)]
    for spec in scorer.score_specs:
        values = np.asarray(scored[spec.column], dtype=np.float64)
        assert list(scored[spec.error_column]) == [""] * ROWS, scored[spec.error_column]
        assert np.isfinite(values).all(), values
        if not SCORER_CASES[name].bounded:
            continue
        if spec.low is not None:
            assert (values >= spec.low - 1e-4).all(), (spec, values)
        if spec.high is not None:
            assert (values <= spec.high + 1e-4).all(), (spec, values)


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_column_is_named_with_its_option(name, scorers):
    case = SCORER_CASES[name]
    scorer = scorers[name]
    batch = case.rows(2)
    column = getattr(scorer.config, case.required_field)
    del batch[column]
    with pytest.raises(KeyError, match=case.required_field):
        scorer(batch)


@pytest.mark.parametrize("name", NAMES)
def test_hostile_rows_get_nan_and_a_reason_beside_good_rows(name, scorers):
    case = SCORER_CASES[name]
    scorer = scorers[name]
    good, hostile = case.rows(2), case.hostile()
    batch = {column: good[column][:1] + hostile[column] + good[column][1:] for column in good}
    out = scorer(batch)
    size = batch_size(batch)
    for spec in scorer.score_specs:
        values, reasons = np.asarray(out[spec.column], dtype=np.float64), list(out[spec.error_column])
        assert len(values) == len(reasons) == size
        assert np.isfinite(values[[0, size - 1]]).all() and reasons[0] == reasons[-1] == ""
        for index in range(1, size - 1):
            assert math.isnan(values[index]) and reasons[index], (index, reasons[index], values[index])


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_parity(name, scorers, reference):
    scorer = scorers[name]
    rows = Dataset.from_dict(SCORER_CASES[name].rows(ROWS))
    one_by_one = map_with_scorer(rows, scorer, batch_size=1)
    for column in score_columns(scorer):
        np.testing.assert_allclose(one_by_one[column], reference[name][column], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_streaming_gives_the_same_rows_and_schema(name, scorers, reference):
    scorer = scorers[name]
    rows = Dataset.from_dict(SCORER_CASES[name].rows(ROWS))
    streamed = map_with_scorer(rows.to_iterable_dataset(), scorer, batch_size=4)
    assert streamed.features == reference[name].features
    got = list(streamed)
    assert len(got) == ROWS
    for column in score_columns(scorer):
        np.testing.assert_allclose([row[column] for row in got], reference[name][column], atol=1e-4, rtol=1e-4)
