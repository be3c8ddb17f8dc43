"""Dataset and model cards rendered from the templates shipped in ``hf_vlm_filter/hub/templates/`` with
huggingface_hub's card classes (``DatasetCard.from_template`` / ``ModelCard.from_template``, Jinja2).

The YAML metadata is what the Hub's validator accepts: ``configs`` (data files per split),
``size_categories``, ``task_categories``, ``tags``, ``source_datasets``; model cards carry
``base_model``, ``datasets`` and ``model-index`` evaluation results. The whole run record is also kept
under the ``hf_vlm_filter`` metadata key, machine-readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines.calibration import calibration_facts
from ..engines.run_record import FilterRun
from ..models.judge_prompt import MAX_PIXELS, MIN_PIXELS

#: Folder of the card templates (``dataset_card.md``, ``compact_judge.md``), inside the package.
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DATASET_TEMPLATE = "dataset_card.md"
MODEL_TEMPLATE = "compact_judge.md"
HISTOGRAM_FILE = "score_histogram.png"
DEFAULT_TAGS = ("hf_vlm_filter", "data-filtering", "image-text")
#: Upper bounds of the Hub's ``size_categories``.
_SIZE_CATEGORIES = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
)


def size_category(num_rows: int) -> str:
    """The Hub ``size_categories`` value for ``num_rows`` rows.

    Example:
        >>> size_category(999), size_category(1000), size_category(25_000)
        ('n<1K', '1K<n<10K', '10K<n<100K')
    """
    for bound, name in _SIZE_CATEGORIES:
        if num_rows < bound:
            return name
    return "1B<n<10B"


def template_path(name: str) -> Path:
    """Path of the card template ``name`` shipped with the package (clear error when it is missing)."""
    path = TEMPLATES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"card template {name!r} not found in {TEMPLATES_DIR}; pass template_path= to use your own"
        )
    return path


def is_hub_id(source: str) -> bool:
    """Whether ``source`` reads as a Hub dataset id (``name`` or ``owner/name``) rather than a path."""
    return (
        not Path(source).expanduser().exists()
        and source.count("/") <= 1
        and not source.startswith((".", "/", "~"))
        and Path(source).suffix.lower() not in (".parquet", ".json", ".jsonl", ".csv")
    )


def data_files_config(splits: Sequence[str], pattern: str = "data/{split}-*") -> list[dict[str, Any]]:
    """A ``configs`` metadata entry listing each split's data files (``pattern`` takes ``{split}``)."""
    return [{"config_name": "default", "data_files": [{"split": s, "path": pattern.format(split=s)} for s in splits]}]


def build_dataset_card(
    run: FilterRun,
    repo_id: str,
    *,
    num_rows: int | None = None,
    configs: list[dict[str, Any]] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    task_categories: Sequence[str] = ("image-to-text", "text-to-image"),
    tags: Sequence[str] = DEFAULT_TAGS,
    license: str | None = None,
    pretty_name: str | None = None,
    histogram_file: str | None = HISTOGRAM_FILE,
    template: str | Path | None = None,
    gallery_markdown: str | None = None,
    report_file: str | None = None,
) -> Any:
    """The ``DatasetCard`` of a curated dataset, filled from ``run``.

    ``num_rows`` is the number of rows published (default ``run.summary.kept``); ``configs`` the data
    files per split (default ``data/train-*``); ``extra_metadata`` more YAML keys (e.g. the
    ``dataset_info`` that ``datasets.push_to_hub`` wrote); ``histogram_file`` the PNG beside the
    card (``None``: the card shows the summary's text histogram); ``gallery_markdown`` the grid of
    kept and dropped thumbnails (:func:`hf_vlm_filter.reports.write_card_grid`) and ``report_file``
    the run's HTML report beside the card, shown under "The cut".

    Example:
        >>> card = build_dataset_card(run, "me/pairs-hq")                     # doctest: +SKIP
        >>> card.data.size_categories, card.data.source_datasets              # doctest: +SKIP
        (['n<1K'], ['user/pairs'])
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    summary = run.summary
    rows = summary.rows if summary else 0
    kept = num_rows if num_rows is not None else (summary.kept if summary else 0)
    source_is_hub = is_hub_id(run.source)
    tags = list(dict.fromkeys([*tags, *(f"scorer-{info.name.lower()}" for info in run.scorers)]))
    record = run.to_dict()
    if record.get("calibration"):  # the figures, not the disagreeing rows' captions, in the YAML
        record["calibration"] = {k: v for k, v in record["calibration"].items() if k != "disagreements"}
    metadata: dict[str, Any] = {
        "configs": configs if configs is not None else data_files_config([run.split]),
        **dict(extra_metadata or {}),
        "hf_vlm_filter": record,
    }
    card_data = DatasetCardData(
        pretty_name=pretty_name or repo_id.split("/")[-1],
        size_categories=[size_category(kept)],
        task_categories=list(task_categories),
        source_datasets=[run.source] if source_is_hub else None,
        license=license,
        tags=tags,
        **metadata,
    )
    errors = summary.errors if summary else {}
    reproduce, language = (run.command, "bash") if run.command else (run.recipe or "# not recorded", "python")
    return DatasetCard.from_template(
        card_data,
        template_path=str(template or template_path(DATASET_TEMPLATE)),
        pretty_name=pretty_name or repo_id.split("/")[-1],
        repo_id=repo_id,
        source=run.source,
        source_url=f"https://huggingface.co/datasets/{run.source}" if source_is_hub else run.source,
        source_revision=run.source_revision,
        library_version=run.library_version,
        rule=rule_text(run),
        scorers=run.scorers,
        prompt=run.prompt,
        rows=rows,
        scored=summary.scored if summary else 0,
        errors_total=rows - (summary.scored if summary else 0),
        errors=errors,
        kept=kept,
        kept_percent=f"{kept / rows:.1%}" if rows else "n/a",
        histogram_file=histogram_file,
        histogram_caption=_histogram_caption(run),
        histogram_text="\n".join(line for h in (summary.histograms.values() if summary else ()) for line in h.render()),
        elapsed=f"{summary.elapsed_seconds:.1f} s ({summary.rows_per_second:.1f} rows/s)"
        if summary and summary.elapsed_seconds > 0 else None,
        reproduce=reproduce,
        reproduce_language=language,
        gallery_markdown=gallery_markdown,
        report_file=report_file,
        calibration=_calibration_rows(run.calibration) if run.calibration else None,
    )


def _calibration_rows(calibration: Mapping[str, Any]) -> dict[str, str]:
    """The calibration's card facts as literal Markdown text (the file's strings are not markup)."""
    from ..reports.card_grid import md_text

    return {key: md_text(value) for key, value in calibration_facts(dict(calibration)).items()
            if value is not None}


def rule_text(run: FilterRun) -> str:
    """The keep rule as the card words it: ``"judge_score >= 9, error rows dropped"``."""
    if not run.rule.is_filter:
        return "no filter (every row kept)"
    return f"{run.rule.criteria}, error rows {'kept' if run.rule.keep_errors else 'dropped'}"


def _histogram_caption(run: FilterRun) -> str:
    columns = ", ".join(f"`{info.score_column}`" for info in run.scorers) or "the scores"
    marks = " Dashed lines mark the thresholds." if run.rule.thresholds else ""
    return f"Distribution of {columns} over every row read (before filtering).{marks}"


@dataclass
class EvalMetric:
    """One evaluation figure of a checkpoint (becomes a ``model-index`` result)."""

    name: str
    value: float
    dataset: str
    dataset_type: str | None = None
    metric_type: str | None = None
    split: str | None = None


def build_model_card(
    repo_id: str,
    *,
    base_model: str,
    datasets: Sequence[str] = (),
    metrics: Sequence[EvalMetric] = (),
    threshold: float = 9.0,
    threshold_note: str = "",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = DEFAULT_TAGS,
    template: str | Path | None = None,
) -> Any:
    """The ``ModelCard`` of a fine-tuned judge: base model, datasets, metrics as ``eval_results``,
    intended use, threshold guidance and how to score with hf_vlm_filter.

    Example:
        >>> card = build_model_card("me/judge", base_model="Qwen/Qwen2-VL-2B-Instruct",
        ...     metrics=[EvalMetric("accuracy", 0.81, "me/judge-eval")])     # doctest: +SKIP
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = repo_id.split("/")[-1]
    eval_results = [
        EvalResult(
            task_type="image-text-to-text",
            task_name="image-caption quality scoring",
            dataset_type=metric.dataset_type or metric.dataset,
            dataset_name=metric.dataset,
            dataset_split=metric.split,
            metric_type=metric.metric_type or metric.name,
            metric_name=metric.name,
            metric_value=metric.value,
        )
        for metric in metrics
    ]
    card_data = ModelCardData(
        model_name=name,
        base_model=base_model,
        datasets=list(datasets) or None,
        license=license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=list(tags),
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template or template_path(MODEL_TEMPLATE)),
        model_name=name,
        repo_id=repo_id,
        base_model=base_model,
        datasets=list(datasets),
        metrics=metrics,
        threshold=f"{threshold:g}",
        threshold_note=threshold_note,
        min_pixels=min_pixels if min_pixels is not None else MIN_PIXELS,
        max_pixels=max_pixels if max_pixels is not None else MAX_PIXELS,
    )
