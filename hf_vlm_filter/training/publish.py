"""Publish a graded judge-training dataset with its report as the dataset card.

:func:`push_judge_dataset` pushes the splits with ``datasets``' own ``push_to_hub`` (Parquet shards,
``configs`` / ``dataset_info`` metadata), then replaces ``README.md`` with a card that keeps that
metadata and states the rubric table (:data:`~hf_vlm_filter.training.rubric.RUBRIC`) and the build's
report (:class:`~hf_vlm_filter.training.report.JudgeDataReport`: counts per transformation and score,
gate refusals, the text-only control).

Example:
    >>> graded = build_judge_dataset("pairs.parquet", examples_per_image=4)     # doctest: +SKIP
    >>> push_judge_dataset(graded, "me/judge-data")                              # doctest: +SKIP
    'me/judge-data'
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .report import JudgeDataReport, judge_data_report
from .rubric import KEEP_SCORE, rubric_markdown

README = "README.md"


def judge_dataset_card_text(report: JudgeDataReport | None, repo_id: str) -> str:
    """The card body (Markdown, no metadata header) of a judge-training dataset."""
    from .._version import __version__

    parts = [
        f"# {repo_id.split('/')[-1]}", "",
        "Graded image-text pairs for training an image-caption judge, built with "
        f"[hf_vlm_filter](https://pypi.org/project/hf_vlm_filter/) {__version__} "
        "(`hf_vlm_filter.training.builder.build_judge_dataset`).", "",
        "Columns: `image`, `text`, `level` (UniFilter's quality level 0-3: mismatched, loosely_related, "
        "partially_accurate, accurate), `score` (the compact judge's rubric score 1-10), `target` "
        "(`score: {N}`, the generative judge's answer), `transformation` (which row of the table below made the "
        f"text), `generator` (its full record) and `source_id`. A judge keeps `score >= {KEEP_SCORE}`.", "",
        "## Rubric", "",
        "The final score is the lowest rule that applies: any hallucination <= 2, a generic caption <= 3, "
        "omitting major elements 4-6, a minor detail missing 7-8, detailed and accurate 9-10.", "",
        rubric_markdown(), "",
        "## Build report", "",
        report.markdown() if report is not None else "No build report was recorded with these splits.", "",
        "## Load", "", "```python", "from datasets import load_dataset", "",
        f'graded = load_dataset("{repo_id}")', "```", "",
    ]
    return "\n".join(parts)


def push_judge_dataset(graded: Any, repo_id: str, *, token: str | None = None, private: bool | None = None,
                       report: JudgeDataReport | None = None,
                       commit_message: str = "Upload judge-training data (hf_vlm_filter)") -> str:
    """Push ``graded`` (a ``DatasetDict`` from :func:`~hf_vlm_filter.training.builder.build_judge_dataset`)
    to ``repo_id`` with a dataset card holding the rubric and the build's report (``report``, else the
    one the build wrote into the splits). Returns ``repo_id``."""
    from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi

    report = report if report is not None else judge_data_report(graded)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    graded.push_to_hub(repo_id, token=token, private=private, commit_message=commit_message)
    pushed = DatasetCard.load(api.hf_hub_download(repo_id, README, repo_type="dataset"))
    metadata = pushed.data.to_dict()
    metadata.setdefault("task_categories", ["image-to-text", "text-to-image"])
    tags = list(metadata.get("tags") or [])
    metadata["tags"] = tags + [tag for tag in ("hf_vlm_filter", "judge-training") if tag not in tags]
    from huggingface_hub import DatasetCardData

    card = DatasetCard(f"---\n{DatasetCardData(**metadata).to_yaml()}\n---\n\n{judge_dataset_card_text(report, repo_id)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / README
        path.write_text(str(card), encoding="utf-8")
        api.create_commit(repo_id, [CommitOperationAdd(README, str(path))], repo_type="dataset",
                          commit_message="Dataset card with the rubric and the build report")
    return repo_id


__all__ = ["judge_dataset_card_text", "push_judge_dataset"]
