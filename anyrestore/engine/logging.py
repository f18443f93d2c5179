"""Run logging: CSV always (``<run>/log.csv``), TensorBoard when installed, console via tqdm."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one CSV row per logged iteration; columns grow as new keys appear (the file is rewritten then).

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard events when the ``tensorboard`` package is importable.
        resume_from: drop rows with ``iteration`` greater than this (a resumed run rewrites them).
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = True, resume_from: int | None = None) -> None:
        self.path = Path(run_dir) / "log.csv"
        self.rows: list[dict[str, Any]] = []
        if resume_from is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(float(r["iteration"])) <= resume_from]
        self.columns: list[str] = list(self.rows[0].keys()) if self.rows else ["iteration"]
        self._rewrite()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # optional dependency
                self.tb = None

    def log(self, iteration: int, values: dict[str, float], prefix: str = "train") -> None:
        row = {"iteration": iteration, **{f"{prefix}/{k}": v for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=self.columns).writerow(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "iteration":
                    self.tb.add_scalar(key, value, iteration)

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
