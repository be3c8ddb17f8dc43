"""The README's world: every checkpoint, file and Hub id its code blocks name, made offline and tiny.

``tests/test_readme.py`` runs the README's Python blocks as written, top to bottom in one namespace
(a block marked ``<!-- readme: skip (why) -->`` on the line before it is not run), in a folder that
:func:`readme_world` fills first:

* the local checkpoints the blocks name (``./judge``, ``./clip``, ``./lm``...) as tiny random ones;
* the Hub repositories they name (``Dauka-transformers/Compact_VLM_filter``, ``some/captions``...)
  as tiny checkpoints and the sample, to upload to the loopback Hub server of the tests, which the
  blocks then read from (and publish to) through the real clients;
* the data: ``pairs.parquet`` (the shipped sample with its images embedded, and a ``text`` copy of
  the caption), ``llava.json`` (instruction rows over the sample's images).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..models.tiny import save_tiny_model

#: Local checkpoint folders the README names -> tiny kind.
LOCAL_CHECKPOINTS = {
    "judge": "compact_vlm", "my-judge": "compact_vlm", "Qwen2-VL-2B-judge": "compact_vlm", "clip": "clip",
    "clip-vit-large-patch14": "clip", "siglip-base-patch16-224": "siglip", "lm": "causal_lm",
    "UniFilter-Qwen2.5-1.5B": "unifilter", "grounding-dino-tiny": "grounding_dino", "sam-vit-large": "sam",
}
#: Hub model ids the README names -> tiny kind (put in the folder's own Hugging Face cache).
HUB_CHECKPOINTS = {
    "Dauka-transformers/Compact_VLM_filter": "compact_vlm", "Qwen/Qwen2-VL-2B-Instruct": "compact_vlm",
    "openai/clip-vit-base-patch32": "clip", "openai/clip-vit-large-patch14": "clip",
}
#: Hub dataset ids the README names (made local folders of the sample).
HUB_DATASETS = ("some/captions", "user/pairs")


def readme_world(folder: str | Path, sample: str | Path) -> list[tuple[str, str, Path]]:
    """Fill ``folder`` (see the module docstring); returns the ``(repo_type, repo_id, folder)`` to
    upload to the Hub the blocks talk to."""
    import datasets

    folder = Path(folder)
    for name, kind in LOCAL_CHECKPOINTS.items():
        save_tiny_model(folder / name, kind=kind)
    uploads: list[tuple[str, str, Path]] = []
    for repo, kind in HUB_CHECKPOINTS.items():
        uploads.append(("model", repo, save_tiny_model(folder / ".hub" / repo, kind=kind)))
    sample = Path(sample)
    rows = json.loads(sample.read_text())
    images = [(sample.parent / row["image_path"]).read_bytes() if (sample.parent / row["image_path"]).is_file()
              else None for row in rows]
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "text": datasets.Value("string")})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": data, "path": None} if data is not None else None for data in images],
         "caption": [row["caption"] for row in rows], "text": [row["caption"] for row in rows]}, features=features)
    table.to_parquet(str(folder / "pairs.parquet"))
    for repo in HUB_DATASETS:
        target = folder / ".hub" / repo / "data"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "pairs.parquet", target / "train-00000-of-00001.parquet")
        uploads.append(("dataset", repo, target.parent))
    shutil.copytree(sample.parent / "images", folder / "images", dirs_exist_ok=True)
    conversations = [{"image": f"images/{Path(row['image_path']).name}",
                      "conversations": [{"from": "human", "value": "<image>\nWhat is in the picture?"},
                                        {"from": "gpt", "value": row["caption"] or "I cannot tell."}]}
                     for row in rows]
    (folder / "llava.json").write_text(json.dumps(conversations))
    return uploads
