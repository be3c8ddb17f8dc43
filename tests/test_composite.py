"""CompositeScorer (one decode per image), threshold_filter / top_fraction, and the multi-scorer CLI."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from hf_vlm_filter import ClipScorer, CompositeScorer, VLMJudge, threshold_filter, top_fraction
from hf_vlm_filter.cli import main
from tests.conftest import jpeg_bytes, random_image


@pytest.fixture(scope="module")
def tiny_clip_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-clip"), kind="clip"))


def pairs() -> Dataset:
    images = [{"bytes": jpeg_bytes(random_image(40 + 10 * i, 60, seed=i)), "path": None} for i in range(4)]
    images.append({"bytes": b"not an image", "path": None})
    images.append(None)
    captions = ["a dog", "two cats", "sunset", "   ", "x", "a bus"]
    return Dataset.from_dict({"id": list(range(6)), "image": images, "caption": captions})


def count_opens(monkeypatch) -> dict[str, int]:
    calls = {"open": 0}
    original = Image.open

    def counted(*args, **kwargs):
        calls["open"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counted)
    return calls


def test_composite_decodes_once_and_matches_each_scorer(tiny_judge_path, tiny_clip_path, monkeypatch):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32")
    clip = ClipScorer(tiny_clip_path, device="cpu", dtype="float32")
    batch = pairs()[:]
    alone = {**judge(batch), **clip(batch)}
    calls = count_opens(monkeypatch)
    both = CompositeScorer([judge, clip])
    out = both(batch)
    # 4 good images once each; the bad-bytes row is tried once by the composite, its reason shared
    assert calls["open"] == 4 + 1
    assert set(out) == set(alone) == set(both.output_features())
    for name in ("judge_score", "clip_score"):
        np.testing.assert_allclose(out[name], alone[name], atol=1e-5)
    for name in ("judge_error", "clip_error"):
        assert list(out[name]) == list(alone[name])
    assert out["clip_error"][4].startswith("not an image") and out["judge_error"][5] == "missing image"
    assert out["judge_error"][3] == "empty caption" and not math.isnan(out["clip_score"][0])


def test_composite_decodes_on_the_prefetch_pool_with_the_serial_results(tiny_judge_path, tiny_clip_path, monkeypatch):
    import threading

    batch = pairs()[:]
    serial = CompositeScorer([VLMJudge(tiny_judge_path, device="cpu", dtype="float32", prefetch_workers=0),
                              ClipScorer(tiny_clip_path, device="cpu", dtype="float32", prefetch_workers=0)])
    pooled = CompositeScorer([s.with_options(prefetch_workers=w) for s, w in zip(serial.scorers, (1, 3))])
    assert (serial.decode_workers(), pooled.decode_workers()) == (0, 3)
    expected = serial(batch)
    threads = set()
    original = Image.open

    def recording(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(Image, "open", recording)
    out = pooled(batch)
    assert threads and all(name.startswith("hf-vlm-filter-prefetch") for name in threads)  # none in the caller
    assert set(out) == set(expected)
    for name in out:
        if name.endswith("_score"):
            np.testing.assert_array_equal(out[name], expected[name])
        else:
            assert list(out[name]) == list(expected[name])


def test_composite_in_map_and_pickle(tiny_judge_path, tiny_clip_path):
    both = CompositeScorer([VLMJudge(tiny_judge_path, device="cpu", dtype="float32"),
                            ClipScorer(tiny_clip_path, device="cpu", dtype="float32")])
    ds = pairs()
    features = both.output_features(ds.features)
    assert {"judge_score", "judge_error", "clip_score", "clip_error", "id"} <= set(features)
    out = ds.map(both, batched=True, batch_size=4, features=features)
    assert list(out["id"]) == list(range(6))
    clone = pickle.loads(pickle.dumps(both))
    assert len(pickle.dumps(both)) < 4_000
    assert [s.config for s in clone.scorers] == [s.config for s in both.scorers]
    with pytest.raises(ValueError, match="judge_score"):
        CompositeScorer([both.scorers[0], both.scorers[0]])


def test_threshold_filter():
    batch = {"a": [9.0, 9.5, float("nan"), 8.0, 10.0], "b": [0.3, 0.1, 0.5, 0.4, None]}
    assert threshold_filter(batch, {"a": 9}) == [True, True, False, False, True]
    assert threshold_filter(batch, {"a": 9, "b": 0.2}) == [True, False, False, False, False]
    assert threshold_filter(batch, {"a": 9, "b": 0.2}, keep_errors=True) == [True, False, True, False, True]
    with pytest.raises(KeyError, match="c"):
        threshold_filter(batch, {"c": 1})


def test_top_fraction():
    scores = [0.1, 0.9, float("nan"), 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.05]
    ds = Dataset.from_dict({"id": list(range(11)), "clip_score": scores})
    assert top_fraction(ds, "clip_score", 0.3)["id"] == [1, 4, 7]
    assert top_fraction(ds, "clip_score", 0.3, higher_is_better=False)["id"] == [0, 6, 10]
    assert top_fraction(ds, "clip_score", 1.0)["id"] == [i for i in range(11) if i != 2]
    with pytest.raises(TypeError, match="IterableDataset"):
        top_fraction(ds.to_iterable_dataset(), "clip_score", 0.3)
    with pytest.raises(ValueError):
        top_fraction(ds, "clip_score", 0)


@pytest.mark.parametrize("streaming", [False, True])
def test_cli_compact_and_clip(tiny_judge_path, tiny_clip_path, tmp_path, streaming):
    from tests.test_cli import SAMPLE, SAMPLE_ROWS, read

    flag = ["--streaming"] if streaming else []
    models = ["--scorer", "compact", "--scorer", "clip",
              "--model-for", f"compact={tiny_judge_path}", "--model-for", f"clip={tiny_clip_path}"]
    scored = tmp_path / "scored"
    assert main(["score", str(SAMPLE), *models, "--out", str(scored), *flag]) == 0
    rows = read(scored)
    assert [r["image_path"] for r in rows] == [str((SAMPLE.parent / r["image_path"]).resolve()) for r in SAMPLE_ROWS]
    good = [r for r in rows if r["judge_error"] == ""]
    assert len(good) == 11 and all(r["clip_error"] == "" and -1 <= r["clip_score"] <= 1 for r in good)
    assert [r["judge_error"].split(":")[0] for r in rows] == [r["clip_error"].split(":")[0] for r in rows]
    clip_cut = sorted(r["clip_score"] for r in good)[5]
    kept = tmp_path / "kept"
    assert main(["filter", str(SAMPLE), *models, "--threshold", "0", "--threshold-for", f"clip_score={clip_cut}",
                 "--out", str(kept), *flag]) == 0
    kept_rows = read(kept)
    expected = [r["image_path"] for r in good if r["clip_score"] >= clip_cut]
    assert [r["image_path"] for r in kept_rows] == expected and len(expected) >= 6
    assert f"kept        {len(expected)} (" in (kept / "summary.txt").read_text()


def test_cli_multi_scorer_arguments(tmp_path, capsys):
    from tests.test_cli import SAMPLE

    out = str(tmp_path / "o")
    assert main(["score", str(SAMPLE), "--scorer", "compact", "--scorer", "clip", "--model", "x", "--out", out]) == 2
    assert "--model-for" in capsys.readouterr().err
    assert main(["filter", str(SAMPLE), "--scorer", "clip", "--model", "x", "--out", out]) == 2
    assert "--threshold" in capsys.readouterr().err
    assert main(["score", str(SAMPLE), "--scorer", "clip", "--model-for", "ppl=x", "--out", out]) == 2


def test_cli_threshold_on_a_column_no_scorer_writes(tiny_judge_path, tiny_clip_path, tmp_path, capsys):
    from tests.test_cli import SAMPLE

    models = ["--scorer", "compact", "--scorer", "clip",
              "--model-for", f"compact={tiny_judge_path}", "--model-for", f"clip={tiny_clip_path}"]
    out = tmp_path / "o"
    assert main(["filter", str(SAMPLE), *models, "--threshold-for", "clip_scor=0.2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "do not write: ['clip_scor']" in err and "['judge_score', 'clip_score']" in err
    assert not (out / "data.parquet").exists()
    assert main(["score", str(SAMPLE), *models, "--micro-batch-size", "0", "--out", str(out)]) == 2
    assert "--micro-batch-size must be >= 1" in capsys.readouterr().err
