"""Image cells that name a remote file (``hf://`` on the Hub, chained ``zip://...::archive``), as
``datasets`` yields them for image folders read in streaming mode: opened with the same opener
``datasets`` uses, not mistaken for missing local files."""

from __future__ import annotations

import zipfile

import numpy as np
from datasets import Dataset, load_dataset
from huggingface_hub import HfApi

from hf_vlm_filter import VLMJudge, map_with_scorer
from hf_vlm_filter.inputs import RowError, load_image
from hf_vlm_filter.inputs.images import image_size_hint
from hf_vlm_filter.inputs.sources import load_source

from ._hub_helpers import hub  # noqa: F401 - a fixture
from .conftest import jpeg_bytes, random_image

CAPTIONS = ["a red square", "two blue circles", "a green triangle on grass"]


def test_image_inside_a_zip_archive(tmp_path):
    archive = tmp_path / "images.zip"
    data = jpeg_bytes(random_image(40, 30, seed=1))
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("inner/a.jpg", data)
    image = load_image(f"zip://inner/a.jpg::{archive}")
    assert image.size == (40, 30)
    assert image_size_hint(f"zip://inner/a.jpg::{archive}") is None  # a hint never downloads
    try:
        load_image(f"zip://inner/missing.jpg::{archive}")
    except RowError as exc:
        assert str(exc).startswith("image file not found: zip://inner/missing.jpg::")
    else:  # pragma: no cover - the assertion above is the test
        raise AssertionError("a missing member must be a row error")


def test_streamed_hub_image_folder_scores_like_local_bytes(hub, tiny_judge_path, tmp_path):  # noqa: F811
    folder = tmp_path / "folder"
    folder.mkdir()
    images = [jpeg_bytes(random_image(48 + 8 * i, 40, seed=i)) for i in range(len(CAPTIONS))]
    images.append(b"\xff\xd8\xff\xe0 truncated")  # a broken JPEG, as web scrapes have
    captions = [*CAPTIONS, "a broken file"]
    lines = []
    for index, (data, caption) in enumerate(zip(images, captions)):
        (folder / f"{index}.jpg").write_bytes(data)
        lines.append(f'{{"file_name": "{index}.jpg", "caption": "{caption}"}}')
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    api = HfApi()
    api.create_repo("user/folder", repo_type="dataset")
    api.upload_folder(folder_path=str(folder), repo_id="user/folder", repo_type="dataset")

    judge = VLMJudge(tiny_judge_path, device="cpu")
    local = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images], "caption": captions})
    expected = map_with_scorer(local, judge, batch_size=2)
    assert expected["judge_error"][-1].startswith("corrupt or truncated image")

    streamed, _ = load_source("user/folder", streaming=True)  # what the CLI runs
    cells = [row["image"] for row in streamed]
    assert all(cell["bytes"] is None and cell["path"].startswith("hf://datasets/user/folder@") for cell in cells)
    # What the README tells users who load the stream themselves: switch decoding off, let the judge decode.
    by_hand = load_dataset("user/folder", split="train", streaming=True).decode(False)
    for dataset in (streamed, by_hand):
        remote = list(map_with_scorer(dataset, judge, batch_size=2))
        assert [row["judge_error"] for row in remote] == expected["judge_error"]
        np.testing.assert_allclose([row["judge_score"] for row in remote[:-1]], expected["judge_score"][:-1], atol=1e-6)
