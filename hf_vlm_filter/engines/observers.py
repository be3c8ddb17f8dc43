"""Row observers: what watches every scored batch of a run without holding the run's rows.

An observer (a report's sample of thumbnails, say) sees each batch once, as an Arrow table of every
column with the keep rule's verdicts (``""``: kept). It keeps a bounded state: a streaming job saves
it at each checkpoint (``dump``) and restores it on resume (``load``), and finalize sets it to the
first rank's saved state (``load``) and adds the others' (``merge``) before the finishers run. The
engines know nothing else of it.

Example:
    >>> import pyarrow as pa
    >>> counter = KeptCounter()
    >>> counter.observe(pa.table({"x": [1, 2, 3]}), ["", "error", ""])
    >>> other = KeptCounter(); other.observe(pa.table({"x": [4]}), [""])
    >>> counter.merge([other.dump()])
    >>> counter.kept
    3
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol


class RowObserver(Protocol):
    """See the module docstring."""

    #: Its key in a run's results and rank states (a file-name-safe word).
    name: str

    def observe(self, table: Any, verdicts: Sequence[str]) -> None:
        """One scored batch (all columns) and the keep rule's verdict of each row."""

    def dump(self) -> bytes:
        """The state to save (a rank's checkpoint)."""

    def load(self, data: bytes) -> None:
        """Replace the state with a saved one (resume)."""

    def merge(self, others: Sequence[bytes]) -> None:
        """Add the states other ranks saved."""


class KeptCounter:
    """The smallest observer: rows seen and kept (an example of the protocol, and a test double)."""

    name = "kept-counter"

    def __init__(self) -> None:
        self.seen = 0
        self.kept = 0

    def observe(self, table: Any, verdicts: Sequence[str]) -> None:
        self.seen += table.num_rows
        self.kept += sum(1 for verdict in verdicts if not verdict)

    def dump(self) -> bytes:
        return json.dumps({"seen": self.seen, "kept": self.kept}).encode()

    def load(self, data: bytes) -> None:
        state = json.loads(data)
        self.seen, self.kept = state["seen"], state["kept"]

    def merge(self, others: Sequence[bytes]) -> None:
        for data in others:
            state = json.loads(data)
            self.seen += state["seen"]
            self.kept += state["kept"]
