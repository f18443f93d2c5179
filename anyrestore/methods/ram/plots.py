"""Bar chart of a layer ranking, drawn with OpenCV (a required dependency; matplotlib is only a test extra)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from anyrestore.methods.ram.finetune import Ranking


def draw_ranking(ranking: Ranking, path: str | Path, *, top: int = 30, title: str = "layer ranking") -> str | None:
    """Write a horizontal bar chart of the ``top`` first layers to ``path`` (PNG, atomic).

    Returns a note when nothing useful can be drawn (all scores zero, e.g. a random ranking), else None.
    """
    import cv2

    from anyrestore.io import atomic_write_bytes

    names = ranking.names[:top]
    scores = list(ranking.scores[:top]) if ranking.scores is not None else [0.0] * len(names)
    peak = max(scores, default=0.0)
    row, label_w, bar_w, margin = 18, 330, 420, 10
    height, width = 40 + row * len(names) + margin, label_w + bar_w + 90
    canvas = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, title, (margin, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, score) in enumerate(zip(names, scores)):
        y = 40 + i * row
        label = name if len(name) <= 46 else "..." + name[-43:]
        cv2.putText(canvas, f"{i + 1:>3} {label}", (margin, y + 12), font, 0.38, (40, 40, 40), 1, cv2.LINE_AA)
        length = int(round(bar_w * score / peak)) if peak > 0 else 0
        cv2.rectangle(canvas, (label_w, y + 2), (label_w + max(length, 1), y + row - 3), (180, 110, 40), -1)
        cv2.putText(canvas, f"{score:.4g}", (label_w + length + 4, y + 12), font, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(".png", canvas)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR array
        raise RuntimeError("OpenCV could not encode the ranking chart")
    atomic_write_bytes(path, data.tobytes())
    return "ranking.png: all scores are zero (random ranking); bars are empty" if peak <= 0 else None
