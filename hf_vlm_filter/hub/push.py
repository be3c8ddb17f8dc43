"""Publish to the Hub: a curated dataset with its card, histogram and (given the run's gallery
sample) its HTML report and a grid of kept and dropped thumbnails (:func:`push_filtered`), and a
fine-tuned judge with its processor and model card (:func:`push_checkpoint`).

Every network call goes through :func:`~hf_vlm_filter.hub.retry.with_hub_retries` (transient HTTP
5xx are retried with backoff, then one clear :class:`~hf_vlm_filter.hub.retry.HubUploadError`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engines.run_record import FilterRun
from ..engines.summary import ScoreHistogram
from ..models.judge_prompt import BASE_MODEL
from ..scorers.score_spec import ScoreSpec
from .cards import HISTOGRAM_FILE, EvalMetric, build_dataset_card, build_model_card
from .histogram import try_save_score_histogram
from .retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, HubRetry

README = "README.md"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json")


@dataclass
class PushResult:
    """Where something was pushed: repository, type, the last commit and the files it wrote."""

    repo_id: str
    repo_type: str
    commit_oid: str
    files: list[str] = field(default_factory=list)


def push_filtered(
    dataset: Any,
    repo_id: str,
    run: FilterRun,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload filtered dataset (hf_vlm_filter)",
    license: str | None = None,
    task_categories: Sequence[str] = ("image-to-text", "text-to-image"),
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    gallery: Any = None,
) -> PushResult:
    """Push a curated ``Dataset``, ``DatasetDict`` or ``IterableDataset`` with a dataset card.

    The data goes up with ``datasets``' own ``push_to_hub`` (Parquet shards under ``data/`` and the
    ``configs`` / ``dataset_info`` metadata); then ``README.md`` (rendered from the package's
    ``dataset_card.md`` template and filled from ``run``) and ``score_histogram.png`` are committed
    together. The histogram shows the run's score histograms (every row read: the best picture of
    the cut) or, when ``run`` has no summary, the score columns of the pushed rows. With ``gallery``
    (the run's :class:`~hf_vlm_filter.reports.GallerySample`: ``result.observers[GALLERY]``) the
    commit adds the run's ``report.html`` and ``assets/`` thumbnails of kept and dropped rows, which
    the card shows with their scores.

    Example:
        >>> result = run_in_memory(ds, judge, rule, RunContext("user/pairs", recipe="..."))       # doctest: +SKIP
        >>> push_filtered(result.kept, "me/pairs-hq", result.run)                               # doctest: +SKIP
        PushResult(repo_id='me/pairs-hq', repo_type='dataset', commit_oid='…', files=[…])
    """
    from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
    from huggingface_hub import DatasetCard, HfApi

    if not isinstance(dataset, (Dataset, DatasetDict, IterableDataset, IterableDatasetDict)):
        raise TypeError(f"push_filtered needs a datasets Dataset, DatasetDict or IterableDataset, got {type(dataset).__name__}")
    retry = HubRetry(attempts, base_delay)
    api = HfApi(token=token)
    card_options = {"task_categories": task_categories, "license": license}
    draft = build_dataset_card(run, repo_id, **card_options)  # refused metadata fails before any upload
    retry(lambda: draft.validate(repo_type="dataset"), f"validate the card metadata of {repo_id}")
    retry(lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
          f"create dataset repo {repo_id}")
    retry(lambda: dataset.push_to_hub(repo_id, token=token, private=private, commit_message=commit_message),
          f"push the data of {repo_id}")
    readme = retry(lambda: api.hf_hub_download(repo_id, README, repo_type="dataset"), f"read back {repo_id}/{README}")
    pushed_metadata = DatasetCard.load(readme).data.to_dict()
    histograms = list(run.summary.histograms.values()) if run.summary else _pushed_histograms(dataset, run)
    with tempfile.TemporaryDirectory() as tmp:
        histogram = try_save_score_histogram(histograms, Path(tmp) / HISTOGRAM_FILE, run.thresholds)
        extras, grid, report = report_files(run, gallery, Path(tmp))
        card = build_dataset_card(
            run, repo_id,
            num_rows=_num_rows(dataset, pushed_metadata),
            configs=pushed_metadata.get("configs"),
            extra_metadata={key: pushed_metadata[key] for key in ("dataset_info",) if key in pushed_metadata},
            histogram_file=HISTOGRAM_FILE if histogram else None,
            gallery_markdown=grid, report_file=report,
            **card_options,
        )
        info = commit_dataset_card(api, repo_id, str(card).encode("utf-8"), histogram, retry, extras)
    files = retry(lambda: api.list_repo_files(repo_id, repo_type="dataset"), f"list {repo_id}")
    return PushResult(repo_id, "dataset", info.oid, sorted(files))


def report_files(run: FilterRun, gallery: Any, folder: Path) -> tuple[dict[str, Path], str | None, str | None]:
    """Write the run's report and the card's thumbnail grid into ``folder`` (nothing without a
    ``gallery``); returns ``(path in repo -> file, grid markdown, report path in repo)``."""
    if gallery is None:
        return {}, None, None
    from ..reports import REPORT_FILE, write_card_grid, write_report

    files: dict[str, Path] = {}
    report = None
    if run.summary is not None:
        files[REPORT_FILE] = write_report(folder, run, gallery)
        report = REPORT_FILE
    grid = write_card_grid(run, gallery, folder)
    if grid is not None:
        files.update(grid.files)
    return files, grid.markdown if grid is not None else None, report


def commit_dataset_card(api: Any, repo_id: str, readme: bytes | Path, histogram: Path | None, retry: HubRetry,
                        extras: Mapping[str, Path] | None = None) -> Any:
    """Commit a dataset card (``README.md``: bytes or a file), its score histogram (when drawn) and
    ``extras`` (path in the repository -> local file: the report, the card's thumbnails) to
    ``repo_id`` in one retried commit; returns the commit info."""
    from huggingface_hub import CommitOperationAdd

    content = str(readme) if isinstance(readme, Path) else readme
    operations = [CommitOperationAdd(README, content)]
    if histogram is not None:
        operations.append(CommitOperationAdd(HISTOGRAM_FILE, str(histogram)))
    operations += [CommitOperationAdd(path, str(local)) for path, local in sorted((extras or {}).items())]
    return retry(lambda: api.create_commit(repo_id, operations, commit_message="Dataset card and score histogram",
                                           repo_type="dataset"),
                 f"commit the card of {repo_id}")


def push_checkpoint(
    model_dir: str | Path,
    repo_id: str,
    *,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    metrics: Sequence[EvalMetric] = (),
    threshold: float = 9.0,
    threshold_note: str = "",
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload judge checkpoint (hf_vlm_filter)",
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
) -> PushResult:
    """Push a fine-tuned judge folder (weights, config, processor) with a model card, in one commit.

    ``model_dir`` must hold ``config.json``, weights (``*.safetensors`` / ``*.bin``) and the
    processor (``processor.save_pretrained(model_dir)``). ``base_model`` defaults to the judge's
    base, ``Qwen/Qwen2-VL-2B-Instruct``; ``metrics`` become the card's ``eval_results``; the pixel
    budget the card states is the one the checkpoint's image processor records.

    Example:
        >>> push_checkpoint("out/judge", "me/judge", datasets=["me/judge-train"],
        ...                 metrics=[EvalMetric("accuracy", 0.81, "me/judge-eval")])   # doctest: +SKIP
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    model_dir = Path(model_dir)
    files = _checkpoint_files(model_dir)
    retry = HubRetry(attempts, base_delay)
    card = build_model_card(
        repo_id, base_model=base_model or BASE_MODEL, datasets=datasets, metrics=metrics,
        threshold=threshold, threshold_note=threshold_note, **_pixel_budget(model_dir),
    )
    api = HfApi(token=token)
    retry(lambda: api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True),
          f"create model repo {repo_id}")
    operations = [CommitOperationAdd(path.relative_to(model_dir).as_posix(), str(path)) for path in files]
    operations.append(CommitOperationAdd(README, str(card).encode("utf-8")))
    info = retry(lambda: api.create_commit(repo_id, operations, commit_message=commit_message),
                 f"commit the checkpoint to {repo_id}")
    return PushResult(repo_id, "model", info.oid, sorted(op.path_in_repo for op in operations))


def _checkpoint_files(model_dir: Path) -> list[Path]:
    """The files of a checkpoint folder (its own README excluded), checked for a complete judge."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(model_dir)!r} does not exist")
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != README and ".cache" not in p.parts)
    names = {p.name for p in files}
    if "config.json" not in names:
        raise ValueError(f"{model_dir} has no config.json: save the model with model.save_pretrained({str(model_dir)!r})")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ValueError(f"{model_dir} has no weights (*.safetensors or *.bin)")
    if not names & set(PROCESSOR_FILES):
        raise ValueError(
            f"{model_dir} has no processor files ({', '.join(PROCESSOR_FILES)}): save it with "
            f"processor.save_pretrained({str(model_dir)!r}) so the judge can be loaded from the Hub alone"
        )
    return files


def _pixel_budget(model_dir: Path) -> dict[str, int]:
    """``min_pixels`` / ``max_pixels`` of the saved image processor, when it records them."""
    import json

    for name in ("preprocessor_config.json", "processor_config.json"):
        path = model_dir / name
        if path.is_file():
            config = json.loads(path.read_text())
            config = config.get("image_processor", config)
            size = config.get("size") or {}
            budget = {
                "min_pixels": config.get("min_pixels") or size.get("shortest_edge"),
                "max_pixels": config.get("max_pixels") or size.get("longest_edge"),
            }
            return {key: int(value) for key, value in budget.items() if value}
    return {}


def _pushed_histograms(dataset: Any, run: FilterRun) -> list[ScoreHistogram]:
    """Histograms of the score columns of the pushed rows (every split), read without decoding others."""
    from datasets import DatasetDict, IterableDatasetDict

    parts = list(dataset.values()) if isinstance(dataset, (DatasetDict, IterableDatasetDict)) else [dataset]
    histograms = {info.score_column: ScoreHistogram(ScoreSpec(info.score_column, info.error_column, info.direction))
                  for info in run.scorers}
    for part in parts:
        present = [c for c in histograms if c in (part.column_names or [])]
        for batch in (part.select_columns(present).iter(batch_size=1000) if present else ()):
            for column in present:
                histograms[column].add(batch[column])
    found = [h for h in histograms.values() if h.count]
    if not found:
        raise ValueError(f"the dataset has none of the score columns {list(histograms)} and the run has no summary")
    return found


def _num_rows(dataset: Any, metadata: Mapping[str, Any]) -> int | None:
    """Rows pushed: from ``datasets``' ``dataset_info`` metadata, else ``len`` when known."""
    info = metadata.get("dataset_info")
    infos = info if isinstance(info, list) else [info] if info else []
    total = sum(split.get("num_examples", 0) for item in infos for split in item.get("splits", []))
    if total:
        return total
    try:
        return sum(len(part) for part in dataset.values()) if hasattr(dataset, "values") else len(dataset)
    except TypeError:
        return None
