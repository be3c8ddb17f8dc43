"""The judge-data builder's report (counts, gate refusals, the text-only control), its round trips
(``info.description``, ``save_to_disk``, a pushed dataset's card) and the model generator that sees the image."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from datasets import load_dataset, load_from_disk
from huggingface_hub import DatasetCard

from hf_vlm_filter.training.builder import build_judge_dataset, example_rng
from hf_vlm_filter.training.publish import push_judge_dataset
from hf_vlm_filter.training.report import grouped_text_only_auc, judge_data_report, text_only_auc
from hf_vlm_filter.training.rewrite import RewriteGenerator, model_transformation
from hf_vlm_filter.training.rubric import RUBRIC, rubric_markdown
from hf_vlm_filter.training.scenes import scene_pairs

from ._hub_helpers import TOKEN, hub  # noqa: F401 - hub is a fixture
from ._judge_dataset_helpers import CAPTIONS, caption_source


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return build_judge_dataset(caption_source(40), examples_per_image=4, validation_fraction=0.3, seed=1,
                               neighbours="words", cache_dir=str(tmp_path_factory.mktemp("graded")))


def test_the_report_counts_what_was_built(graded, tmp_path):
    report = judge_data_report(graded)
    assert report is not None and set(report.splits) == {"train", "validation"}
    for name, split in graded.items():
        counted = report.splits[name]
        assert counted.examples == len(split)
        assert counted.per_transformation == dict(Counter(split["transformation"]))
        assert counted.per_score == {str(k): v for k, v in Counter(split["score"]).items()}
        assert counted.source_rows == len(set(split["source_id"])) and counted.gate_rejected == {}
    # the text-only control is the one computed from the written splits
    expected = text_only_auc(graded["train"]["text"], graded["train"]["score"], graded["validation"]["text"],
                             graded["validation"]["score"])
    assert report.text_only_auc == pytest.approx(expected) and not math.isnan(expected)
    text = report.markdown()
    assert f"**{expected:.3f}**" in text and "| `original` | 3 | 10 |" in text and "Neighbours: `words`" in text
    # the report travels with the data
    graded.save_to_disk(str(tmp_path / "saved"))
    assert judge_data_report(load_from_disk(str(tmp_path / "saved"))) == report


def test_the_text_only_control_sees_text_artefacts():
    rng = random.Random(0)
    positives = [f"a {rng.choice(['red', 'blue', 'green'])} {rng.choice(['car', 'bus', 'kite'])} on a street"
                 for _ in range(60)]
    # negatives that are other real captions: indistinguishable from the positives by text alone
    honest = positives[1:] + positives[:1]
    # negatives with an artefact (fixed generic strings): the control finds them
    leaky = [rng.choice(["a picture", "stock photo", "an image of an object"]) for _ in positives]
    texts_honest, texts_leaky = positives + honest, positives + leaky
    labels = [10] * 60 + [1] * 60
    half = list(range(0, 120, 2)), list(range(1, 120, 2))

    def auc(texts):
        return text_only_auc([texts[i] for i in half[0]], [labels[i] for i in half[0]],
                             [texts[i] for i in half[1]], [labels[i] for i in half[1]])

    assert auc(texts_leaky) == 1.0 and auc(texts_honest) < 0.65
    groups = [f"image-{i % 60}" for i in range(120)]
    assert grouped_text_only_auc(texts_leaky, labels, groups) == 1.0
    assert math.isnan(text_only_auc(["a", "b"], [10, 10], ["a", "b"], [10, 1]))


def test_the_default_negatives_pass_the_control_and_noise_does_not(tmp_path):
    """On drawn scenes, the builder's default data keeps the text-only control at most 0.65; making level 0
    out of disfluent text (opt-in) gives the label away to the text alone."""
    source = scene_pairs(150, seed=0)

    def control(name, **options):
        graded = build_judge_dataset(source, examples_per_image=4, validation_fraction=0.3, seed=0,
                                     cache_dir=str(tmp_path / name), **options)
        return judge_data_report(graded).text_only_auc

    assert control("default", neighbours="words") <= 0.65
    quiet = control("borrowed", neighbours="words", levels={0: 0.5, 3: 0.5})
    loud = control("noisy", neighbours="random", noise=True, levels={0: 0.5, 3: 0.5})
    assert quiet < 0.55 and loud > quiet + 0.1


def test_a_pushed_judge_dataset_carries_the_rubric_and_the_report(hub, graded):
    push_judge_dataset(graded, "user/judge-data", token=TOKEN)
    card = DatasetCard.load("user/judge-data")
    report = judge_data_report(graded)
    assert rubric_markdown() in card.text and report.markdown() in card.text
    assert "judge-training" in card.data.tags and card.data.dataset_info  # datasets' own metadata is kept
    pulled = load_dataset("user/judge-data", split="validation")
    assert pulled["text"] == graded["validation"]["text"] and pulled["score"] == graded["validation"]["score"]


def test_a_vlm_that_sees_the_image_writes_the_model_transformations(tiny_judge_path, tmp_path):
    generator = RewriteGenerator(tiny_judge_path, device="cpu", max_new_tokens=4, sees_image=True, batch_size=3,
                                 name="tiny-vlm")
    source = caption_source(4)
    cells = source.cast_column("image", type(source.features["image"])(decode=False))["image"]
    inputs = generator.vision_inputs(list(CAPTIONS[:2]), ["model_hallucination", 0], cells[:2])
    image_token = generator.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (inputs["input_ids"] == image_token).sum(1).tolist() == [4, 4]  # 24 px images: 4 merged patches each
    assert inputs["image_grid_thw"].shape == (2, 3) and (inputs["input_ids"][:, -1] != 0).all()  # left padding
    one_by_one = RewriteGenerator(tiny_judge_path, device="cpu", max_new_tokens=4, sees_image=True, batch_size=1)
    targets = ["model_hallucination", "model_generic", "model_mismatch"]
    assert generator.rewrite(list(CAPTIONS[:3]), targets, images=cells[:3]) == \
        one_by_one.rewrite(list(CAPTIONS[:3]), targets, images=cells[:3])
    graded = build_judge_dataset(source, generator=generator, examples_per_image=4, validation_fraction=0.0,
                                 seed=0, neighbours="words", cache_dir=str(tmp_path))
    rows = graded["train"].cast_column("image", type(source.features["image"])(decode=False)).to_list()
    ks: Counter = Counter()
    for row in rows:
        k = ks[row["source_id"]]
        ks[row["source_id"]] += 1
        if row["generator"] != "model:tiny-vlm":
            continue
        asked = model_transformation(row["level"], example_rng(0, row["source_id"], k, "model"))
        caption = CAPTIONS[int(row["source_id"][-3:])]
        assert row["transformation"] == asked and row["score"] == RUBRIC[asked].score
        assert row["text"] == generator.rewrite([caption], [asked], images=[row["image"]])[0]
    with pytest.raises(ValueError, match="unknown model transformation"):
        generator.rewrite([CAPTIONS[0]], ["colour_swap"])
