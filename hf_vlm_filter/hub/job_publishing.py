"""Publishing a streaming job: its dataset card in the job folder, and its shards and card on the Hub.

The streaming engine knows nothing of the Hub: it calls a publisher's ``put_shard`` after each
checkpoint and each finisher's ``finish`` once the ranks are merged
(:mod:`hf_vlm_filter.engines.streaming`). These are the two this package brings:

* :class:`DatasetCardWriter` writes ``README.md`` (the card) and ``score_histogram.png`` into the
  job folder and, when the job had the report's gallery observer, ``assets/`` thumbnails of kept
  and dropped rows shown in the card (with a link to ``report.html`` when a
  :class:`~hf_vlm_filter.reports.ReportWriter` finisher ran before it);
* :class:`HubPublisher` creates the dataset repository, uploads each finished shard (retried with
  backoff on HTTP 5xx) and, at the end, writes the card locally and commits it with the histogram,
  the report and the thumbnails.

Example:
    >>> from hf_vlm_filter.engines import streaming_filter_job                                # doctest: +SKIP
    >>> hub = HubPublisher("me/pairs-hq")
    >>> hub.target
    'hf://datasets/me/pairs-hq'
    >>> streaming_filter_job(stream, judge, "out/job", context, rule, publisher=hub, finishers=[hub])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engines.streaming import JobResult
from ..engines.streaming.state import DATA_DIR
from .cards import HISTOGRAM_FILE, build_dataset_card, data_files_config
from .histogram import try_save_score_histogram
from .push import README, commit_dataset_card
from .retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, HubRetry


@dataclass
class CardFiles:
    """What :meth:`DatasetCardWriter.write` wrote: the card, the histogram (when drawn) and the
    other files the card shows (path in the repository -> local file)."""

    readme: Path
    histogram: Path | None = None
    extras: dict[str, Path] = field(default_factory=dict)


class DatasetCardWriter:
    """A job finisher: the dataset card ``README.md``, ``score_histogram.png`` and the card's
    thumbnails (``assets/``) in the job folder."""

    def __init__(self, repo_id: str | None = None) -> None:
        self.repo_id = repo_id

    def write(self, result: JobResult) -> CardFiles:
        """Write the card (and the histogram, when matplotlib is there, and the thumbnail grid,
        when the job had the gallery observer); returns what was written."""
        from ..engines.streaming.state import atomic_write_bytes
        from ..reports import GALLERY, REPORT_FILE, write_card_grid

        run = result.run
        histograms = list(run.summary.histograms.values()) if run.summary else []
        histogram = try_save_score_histogram(histograms, result.out_dir / HISTOGRAM_FILE, run.thresholds) \
            if histograms else None
        gallery = result.observers.get(GALLERY)
        grid = write_card_grid(run, gallery, result.out_dir) if gallery is not None else None
        extras = dict(grid.files) if grid is not None else {}
        report = result.out_dir / REPORT_FILE
        if report.is_file():
            extras[REPORT_FILE] = report
        suffix = Path(result.shards[0].path).suffix if result.shards else ".parquet"
        card = build_dataset_card(run, self.repo_id or result.out_dir.name, num_rows=result.kept,
                                  configs=data_files_config(["train"], pattern=f"{DATA_DIR}/{{split}}-*{suffix}"),
                                  histogram_file=HISTOGRAM_FILE if histogram else None,
                                  gallery_markdown=grid.markdown if grid is not None else None,
                                  report_file=REPORT_FILE if report.is_file() else None)
        readme = result.out_dir / README
        atomic_write_bytes(readme, str(card).encode())
        return CardFiles(readme, histogram, extras)

    def finish(self, result: JobResult) -> None:
        self.write(result)


class HubPublisher:
    """A shard publisher and job finisher for the Hub dataset ``repo_id`` (see the module docstring)."""

    def __init__(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                 attempts: int = DEFAULT_ATTEMPTS, base_delay: float = DEFAULT_BASE_DELAY) -> None:
        self.repo_id = repo_id
        self.token = token
        self.private = private
        self.retry = HubRetry(attempts, base_delay)
        self._api: Any = None

    @property
    def target(self) -> str:
        return f"hf://datasets/{self.repo_id}"

    @property
    def api(self) -> Any:
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi(token=self.token)
        return self._api

    def open(self) -> None:
        self.retry(lambda: self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private,
                                                exist_ok=True), f"create dataset repo {self.repo_id}")

    def put_shard(self, local_path: Path, path_in_repo: str) -> None:
        self.retry(
            lambda: self.api.upload_file(path_or_fileobj=str(local_path), path_in_repo=path_in_repo,
                                         repo_id=self.repo_id, repo_type="dataset", commit_message=f"Add {path_in_repo}"),
            f"upload {path_in_repo} to {self.repo_id} (the shard stays in {local_path.parent}; resume the job to retry)",
        )

    def finish(self, result: JobResult) -> None:
        files = DatasetCardWriter(self.repo_id).write(result)
        commit_dataset_card(self.api, self.repo_id, files.readme, files.histogram, self.retry, files.extras)
