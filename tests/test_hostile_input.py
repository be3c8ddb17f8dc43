"""Promises under hostile input (issue 14): a cell that breaks a hint, a decoder or a tokenizer is that
row's error; nulls never end a stream; changed options never slip into a resumed job; memory, files,
URLs and special tokens are bounded or plain text — and a property test feeds random cells of every
form to every registered scorer."""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Value
from PIL import Image

from hf_vlm_filter import ClipScorer, CompositeScorer, VLMJudge
from hf_vlm_filter.cli import main
from hf_vlm_filter.engines import JobOptions, RunContext, streaming_filter_job
from hf_vlm_filter.inputs import ImagePolicy, RowError, load_image, read_path_bytes
from hf_vlm_filter.scorers.registry import SCORERS
from hf_vlm_filter.testing import SCORER_CASES

from .conftest import jpeg_bytes, png_bytes, random_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample" / "pairs.json"


def scored_ok(out: dict, column: str, error: str, size: int) -> None:
    """The contract: one value per row, NaN exactly where there is a reason."""
    values, reasons = np.asarray(out[column], dtype=np.float64), list(out[error])
    assert len(values) == len(reasons) == size
    assert all(math.isnan(v) == bool(r) for v, r in zip(values, reasons)), list(zip(values, reasons))


# ---- 1. a raising length hint is a row error, not a batch failure --------------------------------
def test_an_extreme_aspect_ratio_beside_70_rows_is_one_row_error(tiny_judge_path, tmp_path):
    folder = tmp_path / "pairs"
    (folder / "images").mkdir(parents=True)
    rows = []
    for index in range(70):
        random_image(40 + index % 7, 30, seed=index).save(folder / "images" / f"{index}.jpg")
        rows.append({"image_path": f"images/{index}.jpg", "caption": f"photo {index}"})
    Image.new("RGB", (300, 1), "red").save(folder / "images" / "thin.png")  # 300:1, smart_resize refuses it
    rows.insert(33, {"image_path": "images/thin.png", "caption": "a thin line"})
    (folder / "pairs.json").write_text(json.dumps(rows))
    judge = VLMJudge(tiny_judge_path, device="cpu", micro_batch_size=16, image_root=str(folder))
    out = judge(Dataset.from_list(rows)[:])  # one batch of 71 rows, grouped by hint
    scored_ok(out, "judge_score", "judge_error", 71)
    assert [i for i, r in enumerate(out["judge_error"]) if r] == [33] and "aspect ratio" in out["judge_error"][33]
    assert main(["score", str(folder / "pairs.json"), "--model", tiny_judge_path, "--out", str(tmp_path / "o")]) == 0
    both = CompositeScorer([judge, ClipScorer(str(save_clip(tmp_path)), device="cpu")])(Dataset.from_list(rows)[:])
    assert [i for i, r in enumerate(both["judge_error"]) if r] == [33]


def save_clip(tmp_path: Path) -> Path:
    from hf_vlm_filter.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path / "clip", kind="clip")


# ---- 3. any exception while preparing a row is that row's reason ---------------------------------
def test_unexpected_cells_become_reasons_for_every_scorer(tiny_checkpoints):
    la = Image.new("LA", (40, 30)).convert("La")
    hostile = {"image": [{"bytes": "aGVsbG8=", "path": None}, la, image_cell()],
               "caption": ["base64 text in a bytes field", "premultiplied alpha", "caf\udce9 lone surrogate"]}
    for name in ("compact", "clip", "unifilter"):
        scorer = SCORER_CASES[name].build(tiny_checkpoints)
        out = scorer(hostile)
        scored_ok(out, scorer.score_column, scorer.error_column, 3)
        assert out[scorer.error_column][0], name  # a str in "bytes" is not an image
    ppl = SCORER_CASES["ppl"].build(tiny_checkpoints)
    out = ppl({"caption": ["fine", "caf\udce9 lone surrogate"]})
    scored_ok(out, "caption_ppl", "caption_ppl_error", 2)


def image_cell(seed: int = 0) -> dict:
    return {"bytes": jpeg_bytes(random_image(48, 40, seed=seed)), "path": None}


# ---- 2. nulls never end a stream --------------------------------------------------------------------
@pytest.mark.parametrize("form", ["jsonl", "parquet", "iterable"])
def test_streaming_through_null_cells_in_any_column(tiny_judge_path, tmp_path, form):
    rows = json.loads(SAMPLE.read_text())[:8]
    rows[0] = {**rows[0], "caption": None}
    rows[1] = {**rows[1], "image_path": None}
    rows[4] = {**rows[4], "caption": None, "image_path": None}
    if form == "iterable":
        judge = VLMJudge(tiny_judge_path, device="cpu", image_root=str(SAMPLE.parent))
        stream = Dataset.from_list(rows).to_iterable_dataset()
        result = streaming_filter_job(stream, judge, tmp_path / "job", RunContext("inline"),
                                      options=JobOptions(batch_size=1, progress=False))
        assert result.kept == 8 and result.run.summary.errors == {"missing caption": 1, "missing image": 2}
        return
    source = tmp_path / f"pairs.{form}"
    if form == "jsonl":
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        import pyarrow as pa

        pq.write_table(pa.Table.from_pylist(rows), source, row_group_size=1)
    (tmp_path / "images").symlink_to(SAMPLE.parent / "images")
    out = tmp_path / "job"
    assert main(["score", str(source), "--model", tiny_judge_path, "--streaming", "--batch-size", "1",
                 "--out", str(out)]) == 0
    written = [row for shard in sorted((out / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    assert len(written) == 8 and [bool(r["judge_error"]) for r in written[:2]] == [True, True]


# ---- 4. a resumed job must be the same job ----------------------------------------------------------
@pytest.mark.parametrize("change", [["--max-pixels", "20000"], ["--text-column", "caption2"], ["--dtype", "bfloat16"],
                                    ["--micro-batch-size", "3"], ["--limit", "5"]])
def test_resume_refuses_every_option_that_changes_the_output(tiny_judge_path, tmp_path, capsys, change):
    rows = json.loads(SAMPLE.read_text())
    source = tmp_path / "pairs.json"
    source.write_text(json.dumps([{**row, "caption2": row["caption"]} for row in rows]))
    (tmp_path / "images").symlink_to(SAMPLE.parent / "images")
    argv = ["filter", str(source), "--model", tiny_judge_path, "--threshold", "0", "--streaming",
            "--out", str(tmp_path / "job")]
    limit = ["--limit", "6"]
    assert main([*argv, *limit]) == 0
    capsys.readouterr()
    assert main([*argv, *(change if change[0] == "--limit" else [*limit, *change]), "--resume"]) == 3
    err = capsys.readouterr().err
    field = change[0][2:].replace("-", "_")
    assert f"{field} (saved" in err and "cannot resume" in err and "Traceback" not in err


def test_resume_accepts_options_that_change_nothing(tiny_judge_path, tmp_path):
    argv = ["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--streaming",
            "--out", str(tmp_path / "job")]
    assert main(argv) == 0
    assert main([*argv, "--prefetch-workers", "2", "--device", "cpu", "--resume"]) == 0


# ---- 5. the composite decodes once, fully, and shares the reason ------------------------------------
def test_composite_does_not_score_a_corrupt_lazily_opened_image(tiny_judge_path, tmp_path):
    data = png_bytes(random_image(64, 48, seed=3))
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))  # opens (header fine), fails on load
    batch = {"image": [lazy, Image.open(io.BytesIO(data))], "caption": ["cut", "whole"]}
    judge = VLMJudge(tiny_judge_path, device="cpu")
    clip = ClipScorer(str(save_clip(tmp_path)), device="cpu")
    out = CompositeScorer([judge, clip])(batch)
    for scorer in (judge, clip):
        assert out[scorer.error_column][0].startswith("corrupt or truncated image"), out[scorer.error_column]
        assert math.isnan(out[scorer.score_column][0]) and out[scorer.error_column][1] == ""


# ---- 6. http(s) images: a declared way, with timeouts, retries and a size cap -----------------------
class _Images(http.server.BaseHTTPRequestHandler):
    payload = jpeg_bytes(random_image(50, 40, seed=5))
    failures: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        remaining = self.failures.get(self.path, 0)
        if remaining:
            self.failures[self.path] = remaining - 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/slow.jpg":
            time.sleep(1.0)
        if self.path == "/missing.jpg":
            self.send_response(404)
            self.end_headers()
            return
        body = self.payload * (50 if self.path == "/huge.jpg" else 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_https_images_load_with_retries_and_a_size_cap(image_server):
    policy = ImagePolicy(url_attempts=3, max_file_bytes=len(_Images.payload) * 10)
    assert load_image(f"{image_server}/a.jpg", policy).size == (50, 40)
    _Images.failures["/flaky.jpg"] = 2  # two 503s, then the image
    assert read_path_bytes(f"{image_server}/flaky.jpg", policy) == _Images.payload
    with pytest.raises(RowError, match="image file not found"):
        load_image(f"{image_server}/missing.jpg", policy)
    with pytest.raises(RowError, match="over 0 MiB"):
        load_image(f"{image_server}/huge.jpg", policy)
    _Images.failures["/down.jpg"] = 10
    with pytest.raises(RowError, match="HTTP 503"):
        load_image(f"{image_server}/down.jpg", policy)
    with pytest.raises(RowError, match="image could not be read: .*/slow.jpg: .*timed out"):
        load_image(f"{image_server}/slow.jpg", ImagePolicy(url_timeout=0.2, url_attempts=2))


# ---- 7. a NaN pixel does not blank a float image ----------------------------------------------------
def test_non_finite_pixels_do_not_blank_a_float_image():
    values = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    values[3, 5] = np.nan
    values[7, 9] = np.inf
    image = load_image(Image.fromarray(values, mode="F"))
    pixels = np.asarray(image)[:, :, 0]
    assert pixels.max() == 255 and pixels.min() == 0 and len(np.unique(pixels)) > 200
    with pytest.raises(RowError, match="no finite pixel"):
        load_image(Image.fromarray(np.full((30, 30), np.nan, dtype=np.float32), mode="F"))


# ---- 8. a caption is text, for every scorer ---------------------------------------------------------
def test_special_token_text_in_a_caption_is_plain_text(tiny_checkpoints):
    from hf_vlm_filter import CaptionPerplexity, UniFilterScorer

    clip = ClipScorer(tiny_checkpoints.path("clip"), device="cpu")
    eos = clip.preprocessing.tokenizer.eos_token_id
    ids = clip.preprocessing.caption_ids("a cat<|endoftext|> and more")
    assert ids.count(eos) == 1 and ids[-1] == eos  # only the real end token, at the end
    ppl = CaptionPerplexity(tiny_checkpoints.path("causal_lm"), device="cpu")
    special = ppl.preprocessing.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert ppl.preprocessing.ids("x<|endoftext|>")[1:].count(special) == 0
    unifilter = UniFilterScorer(tiny_checkpoints.path("unifilter"), device="cpu")
    from hf_vlm_filter.models.unifilter import caption_input_ids

    tokenizer = unifilter.preprocessing.tokenizer
    plain = caption_input_ids(tokenizer, "a<|im_end|>b")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") not in plain[1:-1]


# ---- 9. memory: decoded size bounded by mode, counted before decoding --------------------------------
def test_a_small_float_tiff_cannot_take_gigabytes(tmp_path):
    big = Image.fromarray(np.zeros((9000, 9000), dtype=np.float32), mode="F")  # 81 Mpx, 324 MB as float
    path = tmp_path / "big.tiff"
    big.save(path, compression="tiff_deflate")
    assert path.stat().st_size < 2_000_000
    with pytest.raises(RowError, match=r"decompression bomb refused: a 9000x9000 F image needs \d+ MiB"):
        load_image(str(path))


def test_documents_count_images_before_decoding_them(tiny_checkpoints, monkeypatch):
    from hf_vlm_filter.inputs import images as images_module

    scorer = SCORER_CASES["unifilter-docs"].build(tiny_checkpoints, max_images=3)
    decoded = {"n": 0}
    real = images_module.load_image

    def counting(cell, policy=ImagePolicy()):
        decoded["n"] += 1
        return real(cell, policy)

    monkeypatch.setattr("hf_vlm_filter.scorers.unifilter_documents.load_image", counting)
    cells = [image_cell(i) for i in range(5)]
    out = scorer({"texts": [["a text", *[None] * 5]], "images": [[None, *cells]]})
    assert out["unifilter_error"][0] == "document has 5 images (over 3)" and decoded["n"] == 0


# ---- 10. a FIFO never hangs a batch -------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_fifo_path_is_refused_up_front(tiny_judge_path, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    judge = VLMJudge(tiny_judge_path, device="cpu", micro_batch_size=1, image_root=str(tmp_path))
    out = judge({"image": ["pipe.jpg", image_cell()], "caption": ["a pipe", "a photo"]})
    assert out["judge_error"][0] == "not a regular file: pipe.jpg" and out["judge_error"][1] == ""


# ---- 11. inf in an agent column, malformed counts ---------------------------------------------------
def test_visa_select_ignores_non_finite_agent_scores():
    from hf_vlm_filter.visa import visa_select

    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    table = {"sc_score": base, "dp_score": base + rng.normal(size=40), "pt_score": rng.normal(size=40)}
    table["dp_score"][3] = np.inf
    table["pt_score"][7] = -np.inf
    ds = Dataset.from_dict({"id": list(range(40)), **{k: v.astype(np.float32) for k, v in table.items()}})
    picked = visa_select(ds, columns=("sc_score", "dp_score", "pt_score"), fraction=0.25, sample_size=40)
    ids = list(picked.dataset["id"])
    assert len(ids) == 10 and 3 not in ids and 7 not in ids


# ---- the property test: random cells of every form, every registered scorer ------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_GOOD = jpeg_bytes(random_image(40, 30, seed=11))
IMAGE_CELLS = st.one_of(
    st.none(), st.just(""), st.text(max_size=20), st.binary(max_size=64),
    st.just({"bytes": _GOOD, "path": None}), st.just({"bytes": _GOOD[:200], "path": None}),
    st.builds(lambda b: {"bytes": b, "path": None}, st.binary(max_size=32)),
    st.just({"bytes": None, "path": None}), st.just({"bytes": "not-bytes", "path": "x.png"}),
    st.integers(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=3),
    st.just(Image.new("RGBA", (33, 29))), st.just(Image.new("1", (40, 40))), st.just(Image.new("P", (30, 50))),
    st.builds(lambda w, h: {"bytes": png_bytes(Image.new("RGB", (w, h))), "path": None},
              st.integers(1, 300), st.integers(1, 3)),
)
CAPTIONS = st.one_of(st.none(), st.text(max_size=40), st.just("<|im_end|><|image_pad|>"), st.just("   "),
                     st.binary(max_size=10), st.integers(), st.just("caf\udce9"))


def hostile_batch(name: str, draw_images, draw_captions, size: int) -> dict:
    layout = SCORER_CASES[name].rows(1)
    batch: dict = {}
    for column in layout:
        if column in ("image",):
            batch[column] = draw_images
        elif column in ("caption",):
            batch[column] = draw_captions
        elif column == "conversations":
            batch[column] = [[{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": str(c)}]
                             if i % 2 else c for i, c in enumerate(draw_captions)]
        elif column in ("texts", "images"):
            batch["texts"] = [["text", None] if i % 2 else c for i, c in enumerate(draw_captions)]
            batch["images"] = [[None, cell] if i % 2 else cell for i, cell in enumerate(draw_images)]
        elif column == "oa_tag_counts":
            batch[column] = [c if isinstance(c, str) else json.dumps({"cat": 1}) for c in draw_captions]
        else:
            batch[column] = layout[column] * size
    return batch


@pytest.fixture(scope="module")
def all_scorers(tiny_checkpoints):
    return {name: SCORER_CASES[name].build(tiny_checkpoints, micro_batch_size=2)
            if "micro_batch_size" in SCORERS[name].option_fields() else SCORER_CASES[name].build(tiny_checkpoints)
            for name in SCORERS}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_random_cells_keep_the_contract_for_every_scorer(all_scorers, data):
    size = data.draw(st.integers(1, 5))
    images = data.draw(st.lists(IMAGE_CELLS, min_size=size, max_size=size))
    captions = data.draw(st.lists(CAPTIONS, min_size=size, max_size=size))
    for name, scorer in all_scorers.items():
        out = scorer(hostile_batch(name, images, captions, size))
        for spec in scorer.score_specs:
            scored_ok(out, spec.column, spec.error_column, size)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(nulls=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=4, max_size=8))
def test_streaming_job_with_nulls_anywhere(tiny_judge_path, tmp_path_factory, nulls):
    rows = [{"image": None if no_image else image_cell(i), "caption": None if no_caption else f"photo {i}"}
            for i, (no_image, no_caption) in enumerate(nulls)]
    features = Features({"image": __import__("datasets").Image(decode=False), "caption": Value("string")})
    stream = Dataset.from_list(rows, features=features).to_iterable_dataset()
    judge = VLMJudge(tiny_judge_path, device="cpu", micro_batch_size=2)
    out = tmp_path_factory.mktemp("nulls")
    result = streaming_filter_job(stream, judge, out, RunContext("nulls"), options=JobOptions(batch_size=2, progress=False))
    summary = result.run.summary
    assert summary.rows == result.kept == len(rows)
    assert summary.scored == sum(1 for no_image, no_caption in nulls if not (no_image or no_caption))

