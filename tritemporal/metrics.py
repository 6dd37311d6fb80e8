"""Where logged numbers go: metrics.jsonl, TensorBoard and the console, from rank 0 only."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

logger = logging.getLogger(__name__)


class MetricsWriter:
    """Appends one JSON object per logged step and mirrors the scalars to TensorBoard."""

    def __init__(self, run_dir: Path, use_tensorboard: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        self._file = self.path.open("a")
        self._tb = None
        if use_tensorboard:
            # tensorboard is slow to import: only when a run logs
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def write(self, record: dict[str, Any]) -> None:
        """Log one record (must hold `step`); non-finite floats are written as strings."""
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in record.items()
        }
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    tag = key if "/" in key else f"train/{key}"
                    self._tb.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close the files."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl, in order."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_record(record: dict[str, Any]) -> str:
    """One console line: step, losses, lr, speed and collapse monitors."""
    keys = (
        "loss",
        "loss_vjepa",
        "loss_soon",
        "loss_event",
        "loss_ce",
        "loss_var",
        "loss_cov",
        "lr",
        "grad_norm",
    )
    keys += ("clips_per_s", "target_std", "outcome_std", "outcome_rank")
    parts = [f"step {record['step']}"]
    parts += [f"{k} {record[k]:.4g}" for k in keys if isinstance(record.get(k), float)]
    return " | ".join(parts)
