"""`PruningHistory`: what a pruning run removed, step by step, as JSON that
`kprune.replay` re-applies to the original model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from kprune.errors import InvalidArgumentError
from kprune.files import write_atomically

HISTORY_FORMAT = "kprune.history/1"


@dataclass
class PruningHistory:
    """What was removed, step by step, as JSON-serialisable data.

    Each step maps producer names to the channel indices removed, numbered as
    in the model *before* that step. `replay()` re-applies the steps.
    """

    steps: list[dict[str, list[int]]] = field(default_factory=list)
    model_name: str | None = None

    def append(self, removed: Mapping[str, Iterable[int]]) -> None:
        self.steps.append({name: sorted(int(i) for i in idx) for name, idx in removed.items()})

    def to_dict(self) -> dict:
        return {"format": HISTORY_FORMAT, "model": self.model_name, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: Mapping) -> PruningHistory:
        if data.get("format") != HISTORY_FORMAT:
            raise InvalidArgumentError(
                f"Not a kprune pruning history (format {data.get('format')!r}, expected {HISTORY_FORMAT!r})."
            )
        return cls(steps=[dict(step) for step in data["steps"]], model_name=data.get("model"))

    def save(self, path: str | Path) -> None:
        write_atomically(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> PruningHistory:
        return cls.from_dict(json.loads(Path(path).read_text()))
