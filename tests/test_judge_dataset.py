"""The graded judge-training dataset: offline generators, the builder, the model generator and the CLI."""

from __future__ import annotations

import hashlib
import pickle
import random
import subprocess
import sys
from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value, load_from_disk

from hf_vlm_filter.models.loading import CheckpointUnavailableError
from hf_vlm_filter.training.builder import (
    JudgeDatasetBuilder,
    build_judge_dataset,
    example_rng,
    graded_document_features,
    level_counts,
)
from hf_vlm_filter.training.levels import LEVEL_NAMES, graded_caption_features, judge_target
from hf_vlm_filter.training.report import judge_data_report
from hf_vlm_filter.training.perturb import CaptionPool, colour_swap, perturb, perturb_document
from hf_vlm_filter.training.rewrite import RewriteGenerator, level_prompt, model_transformation
from hf_vlm_filter.training.rubric import RUBRIC
from hf_vlm_filter.training.words import ATTRIBUTE_OPPOSITES, COLOURS, NUMBERS, OBJECTS, object_class, object_noun

from ._judge_dataset_helpers import CAPTIONS, caption_source, document_source, png_bytes, save_tiny_chat_lm

#: Borrowed captions: a similar image's, a random image's, and the source's generic labels.
POOL = CaptionPool(similar=("A man riding an elephant.",), others=("A plate of food on a kitchen table.",),
                   generic=("a photo", "image"))
#: The builder tests' neighbours: TF-IDF (no model, the same on every machine); MiniLM and CLIP
#: neighbours are tested in test_judge_data_negatives.py.
NEIGHBOURS = "words"


def _words(text: str) -> list[str]:
    return text.split()


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'").lower()


def _is_strict_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return len(short) < len(long) and all(word in it for word in short)


def _image_hash(example: dict) -> str:
    return hashlib.sha256(example["image"]["bytes"]).hexdigest()


def _rows(dataset: Dataset) -> list[dict]:
    return [dict(row) for row in dataset.cast_column("image", type(dataset.features["image"])(decode=False))]


# ---- offline generators ----------------------------------------------------------------------------


def _bare_words(text: str) -> list[str]:
    """Bare words, with "an" read as "a" (a drop may change the article before the next word)."""
    return ["a" if w == "an" else w for w in map(_bare, text.split())]


@pytest.mark.parametrize("caption", CAPTIONS)
@pytest.mark.parametrize("seed", range(6))
def test_each_level_changes_the_text_the_way_it_claims(caption, seed):
    source = _words(caption)
    # level 3: the caption itself
    assert perturb(caption, 3, random.Random(seed), POOL).text == caption
    # level 2: exactly one detail swapped within its word class (a hallucination, 2), or a minor
    # detail dropped (7-8): the words are a strict subsequence, the end punctuated like the caption
    two = perturb(caption, 2, random.Random(seed), POOL)
    kind, _, change = two.record.partition(":")
    assert RUBRIC[kind].level == 2 and two.score == RUBRIC[kind].score
    out = _words(two.text)
    if kind.startswith("drop_"):
        assert _is_strict_subsequence(_bare_words(two.text), _bare_words(caption))
        assert two.text[-1] == caption[-1] and not two.text.rstrip(".").endswith((",", ";"))
        assert two.score in (7, 8)
    else:
        old, new = change.split("->")
        assert len(out) == len(source) and two.score == 2
        diff = [(a, b) for a, b in zip(source, out) if a != b]
        assert len(diff) == 1 and (_bare(diff[0][0]), _bare(diff[0][1])) == (old, new)
        vocabulary = {"colour_swap": COLOURS, "number_swap": NUMBERS, "attribute_swap": ATTRIBUTE_OPPOSITES}[kind]
        assert old in vocabulary or old.isdigit()
        assert new in vocabulary or new.isdigit()
    # level 1: the main object swapped within its class (one noun, maybe its article), a generic label
    # of the source, or the caption cut to its main subject
    one = perturb(caption, 1, random.Random(seed), POOL)
    assert RUBRIC[one.name].level == 1
    if one.record == "generic_label":
        assert one.text in POOL.generic and one.score == 3
    elif one.name == "drop_major":
        assert _is_strict_subsequence(_bare_words(one.text), _bare_words(caption)) and one.score == 4
    else:
        old, new = one.record.split(":")[1].split("->")
        assert old in OBJECTS and new != old and object_class(new) == object_class(old) and one.score == 2
        out = _words(one.text)
        changed = [i for i, (a, b) in enumerate(zip(source, out)) if a != b]
        assert len(out) == len(source) and 1 <= len(changed) <= 2
        assert object_noun(_bare(out[changed[-1]]))[0] == new
        if len(changed) == 2:
            assert _bare(source[changed[0]]) in ("a", "an") and changed[1] == changed[0] + 1
    # level 0: never the source caption; the similar image's caption, or another image's
    zero = perturb(caption, 0, random.Random(seed), POOL)
    assert zero.text.lower() != caption.lower()
    if zero.record == "neighbour_caption":
        assert zero.text == POOL.similar[0] and zero.score == 2
    else:
        assert zero.record == "other_caption" and zero.text in POOL.others and zero.score == 1


@pytest.mark.parametrize("caption", CAPTIONS)
def test_disfluent_negatives_are_opt_in(caption):
    made = {perturb(caption, 0, random.Random(seed), ()) for seed in range(8)}
    assert made == {None}  # no other caption to borrow and no noise: level 0 does not apply
    for seed in range(8):
        zero = perturb(caption, 0, random.Random(seed), (), noise=True)
        assert zero.text.lower() != caption.lower()
        if zero.record == "shuffle_words":
            assert sorted(_words(zero.text)) == sorted(_words(caption))
        else:
            assert zero.record.startswith("char_noise:") and len(zero.text) == len(caption)
            assert sum(a != b for a, b in zip(zero.text, caption)) == int(zero.record.split(":")[1])


def test_generators_say_when_they_do_not_apply():
    assert colour_swap("a dog on a bench", random.Random(0), ()) is None
    assert perturb("a dog", 2, random.Random(0), ()) is None  # nothing to swap, nothing to drop
    # level 0 without a pool: only opt-in disfluent text applies, and never returns the caption
    assert perturb("a dog on a mat", 0, random.Random(0), ()) is None
    assert perturb("a dog on a mat", 0, random.Random(0), (), noise=True).text != "a dog on a mat"
    assert perturb("a dog on a mat", 1, random.Random(0), ()).name == "object_swap"  # no generic label to borrow
    with pytest.raises(ValueError, match="level must be one of"):
        perturb("a dog", 4, random.Random(0), ())


def test_swaps_keep_the_article_right():
    caption = "A man in an orange coat with an old bag and a red hat"
    outputs = {colour_swap(caption, random.Random(seed), ()).text for seed in range(20)}
    assert len(outputs) > 3
    for text in outputs:
        assert "an orange coat" in text  # no other colour fits "an"; only "red" changes
        assert text.startswith("A man in an orange coat with an old bag and a ") and not text.endswith("red hat")
        assert not text.endswith(("a orange hat",))
    assert perturb(caption, 2, random.Random(0), ()) is not None


def test_document_perturbation_keeps_image_slots():
    texts = ["Two red cars on the street.", None, "A tall building behind them.", None]
    rng = random.Random(3)
    two, record = perturb_document(texts, 2, rng, [])
    assert [t is None for t in two] == [t is None for t in texts]
    assert sum(a != b for a, b in zip(two, texts)) == 1 and "@" in record
    zero, record = perturb_document(texts, 0, random.Random(1), [["A plate of food.", None]])
    assert record in ("other_document", "disfluent_document")
    assert all(zero[i] != texts[i] for i in (0, 2)) and zero[1] is None and zero[3] is None


# ---- the builder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source():
    return caption_source(40, duplicate_every=7)


@pytest.fixture(scope="module")
def graded(source, tmp_path_factory):
    return build_judge_dataset(source, examples_per_image=3, validation_fraction=0.25, seed=5,
                               neighbours=NEIGHBOURS, cache_dir=str(tmp_path_factory.mktemp("graded")))


def test_features_targets_and_records(graded):
    assert isinstance(graded, DatasetDict) and sorted(graded) == ["train", "validation"]
    assert graded["train"].features == graded_caption_features()
    assert isinstance(graded["train"].features["level"], ClassLabel)
    for row in _rows(graded["train"]) + _rows(graded["validation"]):
        # targets are the transformation's rubric score, not a per-level constant
        rubric = RUBRIC[row["transformation"]]
        assert row["target"] == judge_target(row["score"]) and (row["score"], row["level"]) == (rubric.score, rubric.level)
        assert row["generator"].startswith(f"offline:{row['transformation']}")
        assert row["transformation"] in {"original", "colour_swap", "number_swap", "attribute_swap", "drop_modifier",
                                         "drop_phrase", "object_swap", "drop_major", "neighbour_caption",
                                         "other_caption"}  # no generic label in this source, no noise
        caption = CAPTIONS[int(row["source_id"].split("-")[1]) % len(CAPTIONS)]
        assert (row["text"] == caption) == (row["level"] == 3) == (row["score"] >= 9)


def test_level_distribution_follows_fractions(graded):
    for split in graded.values():
        counts = list(level_counts(split).values())
        assert max(counts) - min(counts) <= 1, counts
    # three examples per image: three different levels for each image
    by_image = Counter((row["source_id"], row["level"]) for row in _rows(graded["train"]))
    assert max(by_image.values()) == 1
    assert len(graded["train"]) + len(graded["validation"]) == 3 * 40


def test_uneven_fractions_and_exact_counts(source, tmp_path):
    skewed = build_judge_dataset(source, levels={3: 0.5, 0: 0.5}, validation_fraction=0.0, seed=1,
                                 neighbours=NEIGHBOURS, cache_dir=str(tmp_path / "a"))
    assert list(skewed) == ["train"]
    assert level_counts(skewed["train"]) == {"mismatched": 20, "loosely_related": 0, "partially_accurate": 0,
                                             "accurate": 20}
    counted = build_judge_dataset(source, levels=(6, 4, 4, 2), examples_per_image=2, validation_fraction=0.5,
                                  seed=2, neighbours=NEIGHBOURS, cache_dir=str(tmp_path / "b"))
    total = Counter(level for split in counted.values() for level in split["level"])
    assert [total[level] for level in range(4)] == [6, 4, 4, 2]
    assert list(level_counts(counted["validation"]).values()) == [3, 2, 2, 1]


def test_split_is_disjoint_by_image(source, graded):
    train = {_image_hash(row) for row in _rows(graded["train"])}
    validation = {_image_hash(row) for row in _rows(graded["validation"])}
    assert train and validation and not train & validation
    # rows 7, 14, ... reuse the image of the row before: the two rows always land in the same split
    split_of = {row["source_id"]: name for name in graded for row in _rows(graded[name])}
    for index in range(7, 40, 7):
        assert split_of[f"pair-{index:03d}"] == split_of[f"pair-{index - 1:03d}"]


def test_same_seed_same_dataset_other_seed_other(source, graded, tmp_path):
    again = build_judge_dataset(source, examples_per_image=3, validation_fraction=0.25, seed=5,
                                neighbours=NEIGHBOURS, cache_dir=str(tmp_path / "again"))
    for split in graded:
        assert _rows(again[split]) == _rows(graded[split])
    other = build_judge_dataset(source, examples_per_image=3, validation_fraction=0.25, seed=6,
                                neighbours=NEIGHBOURS, cache_dir=str(tmp_path / "other"))
    assert _rows(other["train"]) != _rows(graded["train"])


def test_streaming_and_files_give_the_same_dataset(source, graded, tmp_path):
    streamed = build_judge_dataset(source.to_iterable_dataset(num_shards=2), examples_per_image=3,
                                   validation_fraction=0.25, seed=5, neighbours=NEIGHBOURS,
                                   cache_dir=str(tmp_path / "s"))
    path = tmp_path / "pairs.parquet"
    source.to_parquet(str(path))
    from_file = build_judge_dataset(str(path), streaming=True, examples_per_image=3, validation_fraction=0.25,
                                    seed=5, neighbours=NEIGHBOURS, cache_dir=str(tmp_path / "f"))
    for split in graded:
        expected = _rows(graded[split])
        assert _rows(streamed[split]) == expected
        assert [{k: v for k, v in r.items() if k != "image"} for r in _rows(from_file[split])] == [
            {k: v for k, v in r.items() if k != "image"} for r in expected]
    limited = build_judge_dataset(str(path), limit=10, validation_fraction=0.0, neighbours=NEIGHBOURS,
                                  cache_dir=str(tmp_path / "l"))
    assert sorted(set(limited["train"]["source_id"])) == [f"pair-{i:03d}" for i in range(10)]


def test_an_empty_split_is_an_empty_dataset_with_the_features(tmp_path):
    graded = build_judge_dataset(caption_source(3), validation_fraction=0.01, seed=0, neighbours=NEIGHBOURS,
                                 cache_dir=str(tmp_path))
    assert len(graded["train"]) == 3 and len(graded["validation"]) == 0
    assert graded["validation"].features == graded_caption_features()


def test_rows_the_scorers_would_refuse_are_skipped_not_built(tmp_path):
    good = caption_source(6)
    rows = good.cast_column("image", Image(decode=False)).to_list()
    rows[1]["image"] = {"bytes": b"not an image", "path": None}
    rows[2]["image"] = {"bytes": rows[2]["image"]["bytes"][:40], "path": None}  # truncated PNG
    rows[3]["image"] = {"bytes": None, "path": str(tmp_path / "missing.png")}
    rows[4]["caption"] = "   "
    source = Dataset.from_list(rows, features=good.features.copy()).cast_column("image", Image(decode=False))
    graded = build_judge_dataset(source, validation_fraction=0.01, seed=0, cache_dir=str(tmp_path / "c"))
    assert sorted(graded["train"]["source_id"]) == ["pair-000", "pair-005"]
    assert all(example["image"].size == (24, 24) for example in graded["train"])  # every kept image decodes


def test_archived_image_paths_are_read_like_the_scorers_read_them(tmp_path):
    """A path cell naming a member of an archive (``zip://member::archive``, as datasets writes for
    image folders in archives; ``hf://`` goes through the same opener) is read, not skipped."""
    import zipfile

    from hf_vlm_filter.inputs import load_image, read_path_bytes

    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for index in range(4):
            zipped.writestr(f"img/{index}.png", png_bytes(index))
        zipped.writestr("img/broken.png", b"not a png")
    paths = [f"zip://img/{index}.png::{archive}" for index in range(4)] + [f"zip://img/broken.png::{archive}",
                                                                           f"zip://img/absent.png::{archive}"]
    source = Dataset.from_dict({"image": [{"bytes": None, "path": p} for p in paths],
                                "caption": list(CAPTIONS[:6])}, features=Features({"image": Image(decode=False),
                                                                                     "caption": Value("string")}))
    graded = build_judge_dataset(source, validation_fraction=0.01, seed=0, cache_dir=str(tmp_path / "c"))
    train = graded["train"].cast_column("image", Image(decode=False))
    assert sorted(graded["train"]["source_id"]) == ["0", "1", "2", "3"]  # row numbers: the source has no ids
    by_id = {row["source_id"]: row["image"] for row in train}
    for index in range(4):
        assert by_id[str(index)] == {"bytes": png_bytes(index), "path": f"{index}.png"}
        assert read_path_bytes(paths[index]) == png_bytes(index)
        assert load_image(paths[index]).mode == "RGB"


def test_without_cache_dir_the_arrow_files_live_in_the_session_temporary_folder():
    from datasets.fingerprint import get_temporary_cache_files_directory

    graded = build_judge_dataset(caption_source(4), validation_fraction=0.01, seed=0)
    files = [f["filename"] for f in graded["train"].cache_files]
    assert files and all(f.startswith(get_temporary_cache_files_directory()) for f in files)


def test_builder_class_prepares_like_the_function(source, graded, tmp_path):
    builder = JudgeDatasetBuilder(cache_dir=str(tmp_path), source=source, examples_per_image=3,
                                  validation_fraction=0.25, seed=5, neighbours=NEIGHBOURS)
    builder.download_and_prepare()
    prepared = builder.as_dataset()
    assert _rows(prepared["validation"]) == _rows(graded["validation"])
    # the same builder streams its examples without writing them
    streamed = JudgeDatasetBuilder(cache_dir=str(tmp_path / "stream"), source=source.to_iterable_dataset(),
                                   examples_per_image=3, validation_fraction=0.25, seed=5,
                                   neighbours=NEIGHBOURS).as_streaming_dataset()
    columns = ["text", "level", "score", "transformation", "generator", "source_id"]
    expected = graded["train"].select_columns(columns).to_list()
    assert [{c: row[c] for c in columns} for row in streamed["train"]] == expected


def test_documents_layout(tmp_path):
    graded = build_judge_dataset(document_source(12), layout="documents", examples_per_image=2,
                                 validation_fraction=0.25, seed=0, justify=True, cache_dir=str(tmp_path))
    assert graded["train"].features == graded_document_features()
    rows = [dict(r) for split in graded.values() for r in split]
    assert len(rows) == 24
    for row in rows:
        assert [t is None for t in row["texts"]] == [False, True, False, True]
        assert [i is None for i in row["images"]] == [True, False, True, False]
        assert row["target"].endswith(judge_target(row["score"])) and row["target"] != judge_target(row["score"])
        assert row["target"].startswith(RUBRIC[row["transformation"]].justification)
        assert row["score"] == min(RUBRIC[part.split(":")[0].split("@")[0]].score
                                   for part in row["generator"].removeprefix("offline:").split("+"))
    for split in graded.values():
        counts = list(level_counts(split).values())
        assert max(counts) - min(counts) <= 1, counts


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"levels": (1, 2, 3)}, ValueError, "one value per level"),
    ({"levels": (-0.5, 1, 0, 0)}, ValueError, "non-negative"),
    ({"levels": {5: 1.0}}, ValueError, "unknown levels"),
    ({"layout": "html"}, ValueError, "layout must be one of"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"examples_per_image": 0}, ValueError, "examples_per_image"),
    ({"generator": "llm"}, ValueError, "generator must be"),
    ({"gate": "strict"}, ValueError, "gate must be one of"),
    ({"min_words": -1}, ValueError, "min_words"),
    ({"max_shared": 1.5}, ValueError, "max_shared"),
    ({"neighbours": "bm25"}, ValueError, "neighbours must be"),
    ({"text_column": "alt"}, ValueError, "column 'alt' is not in the source"),
])
def test_bad_arguments_are_refused(source, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_judge_dataset(source, cache_dir=str(tmp_path), **kwargs)


def test_bad_sources_are_refused(source, tmp_path):
    with pytest.raises(TypeError, match="pass one split"):
        build_judge_dataset(DatasetDict({"train": source}), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no image column"):
        build_judge_dataset(Dataset.from_dict({"caption": ["a dog"]}), cache_dir=str(tmp_path))


# ---- the model generator ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(save_tiny_chat_lm(tmp_path_factory.mktemp("tiny-chat-lm")))


def test_rewrite_prompts_are_per_level_and_batching_does_not_change_output(tiny_lm):
    generator = RewriteGenerator(tiny_lm, device="cpu", max_new_tokens=4, batch_size=3, levels=(0, 1, 2, 3))
    prompts = {level: generator.prompt(CAPTIONS[0], level) for level in range(4)}
    assert len(set(prompts.values())) == 4
    for level, prompt in prompts.items():
        assert level_prompt(level, CAPTIONS[0]) in prompt and CAPTIONS[0] in prompt
    captions, levels = list(CAPTIONS[:4]), [0, 1, 2, 2]
    batched = generator.rewrite(captions, levels)
    one_by_one = RewriteGenerator(tiny_lm, device="cpu", max_new_tokens=4, batch_size=1, levels=(0, 1, 2, 3))
    assert one_by_one.rewrite(captions, levels) == batched
    assert generator.rewrite([CAPTIONS[0]] * 4, [0, 1, 2, 3]) != [batched[0]] * 4  # the prompt depends on the level


def test_rewrite_generator_pickles_to_its_config_and_explains_a_missing_model(tiny_lm, tmp_path):
    generator = RewriteGenerator(tiny_lm, device="cpu", max_new_tokens=4)
    generator.load()
    copy = pickle.loads(pickle.dumps(generator))
    assert copy.config == generator.config and copy._model is None and len(pickle.dumps(generator)) < 1000
    with pytest.raises(CheckpointUnavailableError, match="does not exist"):
        RewriteGenerator(str(tmp_path / "missing")).load()
    with pytest.raises(ValueError, match="levels must be"):
        RewriteGenerator(tiny_lm, levels=(4,))


def test_a_vlm_chat_checkpoint_rewrites_through_its_chat_template(tiny_judge_path):
    generator = RewriteGenerator(tiny_judge_path, device="cpu", max_new_tokens=3, name="tiny-vlm")
    prompt = generator.prompt(CAPTIONS[1], 2)
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert level_prompt(2, CAPTIONS[1]) in prompt
    assert type(generator.load()[1]).__name__ == "Qwen2VLForConditionalGeneration"
    (text,) = generator.rewrite([CAPTIONS[1]], [2])
    assert text is None or isinstance(text, str) and text == text.strip() and text


def test_builder_records_model_rewrites(tiny_lm, tmp_path):
    generator = RewriteGenerator(tiny_lm, device="cpu", max_new_tokens=4, batch_size=16, name="tiny-lm")
    graded = build_judge_dataset(caption_source(4), generator=generator, examples_per_image=4,
                                 validation_fraction=0.0, seed=0, neighbours=NEIGHBOURS, cache_dir=str(tmp_path))
    rows = _rows(graded["train"])
    assert len(rows) == 16
    # each example asked the model for one transformation of its level, drawn with the example's own rng
    ks = Counter()
    asked = {}
    for row in rows:
        k = ks[row["source_id"]]
        ks[row["source_id"]] += 1
        if row["level"] < 3:
            asked[(row["source_id"], row["level"])] = model_transformation(row["level"],
                                                                           example_rng(0, row["source_id"], k, "model"))
    keys = list(asked)
    expected = dict(zip(keys, generator.rewrite([CAPTIONS[int(sid.split("-")[1])] for sid, _ in keys],
                                                [asked[key] for key in keys])))
    texts_of = {}
    for row in rows:
        key, caption = (row["source_id"], row["level"]), CAPTIONS[int(row["source_id"][-3:])]
        if row["level"] == 3:
            assert row["generator"] == "offline:original"
        elif row["generator"] == "model:tiny-lm":
            assert row["text"] == expected[key] and row["transformation"] == asked[key]
            assert (row["score"], row["level"]) == (RUBRIC[asked[key]].score, RUBRIC[asked[key]].level)
        else:  # an empty, unchanged or repeated rewrite falls back to an offline generator of the same level
            assert expected[key] in (None, caption) or expected[key] in texts_of.get(row["source_id"], ())
            assert row["generator"].startswith("offline:")
        texts_of.setdefault(row["source_id"], []).append(row["text"])
    assert sum(row["generator"] == "model:tiny-lm" for row in rows) > 0


# ---- the command line ------------------------------------------------------------------------------


def test_cli_writes_and_prints_level_counts(tmp_path):
    path = tmp_path / "pairs.parquet"
    caption_source(16).to_parquet(str(path))
    out = tmp_path / "graded"
    result = subprocess.run(
        [sys.executable, "dataset_scripts/build_judge_dataset.py", str(path), "--out", str(out),
         "--levels", "4,4,4,4", "--examples-per-image", "4", "--validation-fraction", "0.25", "--seed", "3",
         "--limit", "16", "--neighbours", "words"],
        capture_output=True, text=True, check=True,
    )
    graded = load_from_disk(str(out))
    assert len(graded["train"]) == 12 and len(graded["validation"]) == 4
    assert "train: 12 examples" in result.stdout
    assert all(f"{level} {name}: 3" in result.stdout for level, name in enumerate(LEVEL_NAMES))
    # the build report is printed, and saved with the splits
    report = judge_data_report(graded)
    assert report.markdown() in result.stdout and report.neighbours == "words"
    assert report.splits["train"].per_transformation == dict(Counter(graded["train"]["transformation"]))
    bad = subprocess.run([sys.executable, "dataset_scripts/build_judge_dataset.py", str(path), "--out", str(out),
                          "--levels", "1,2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--levels needs 4" in bad.stderr
