"""JPEG constraint projection: a whole-image stage with no weights.

A decoded JPEG tells us more than its pixels: each 8×8 block's luma DCT coefficient ``c`` was stored as a multiple
of its quantisation step ``Q``, so the true coefficient lies within ``±Q/2`` of the decoded one. The U-Net, trained
against noise too, sometimes wipes texture that JPEG kept (gravel, foliage); clamping its luma coefficients back into
those intervals can only move each one towards the truth when JPEG was the last thing that happened to the image.

The stage is blind: it estimates the luma table from the input itself (a coefficient that was quantised with step
``Q`` sits near a multiple of ``Q``), snaps the estimate to the standard IJG table of the nearest quality when that
fits, and does nothing when the input shows no 8×8 lattice (PNG sources, resized or re-cropped JPEGs). Only the luma
is projected: its change is added to R, G and B alike, which keeps the U-Net's colour.

The same gate routes an image to the default model's JPEG expert (:mod:`anyrestore.archs.jpeg_expert`), whose
output is then projected like the U-Net's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The luma table of the JPEG standard (Annex K), row-major; IJG's quality q scales it (see ``ijg_luma_table``).
STANDARD_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # JFIF (BT.601 full range)
# Row-major indices of the 8×8 frequencies in JPEG's zig-zag order (lowest first)
ZIGZAG = tuple(sorted(range(64), key=lambda i: (i // 8 + i % 8, i // 8 if (i // 8 + i % 8) % 2 else i % 8)))


def ijg_luma_table(quality: int) -> torch.Tensor:
    """The (8,8) luma quantisation table libjpeg (and so OpenCV and Pillow) writes at ``quality`` 1–100."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(STANDARD_LUMA_TABLE, dtype=torch.int64).view(8, 8)
    return ((base * scale + 50) // 100).clamp(1, 255)


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix: row k is frequency k. JPEG's 2-D DCT is ``D @ block @ D.T``."""
    k = torch.arange(n, dtype=dtype)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def luma_levels(img: torch.Tensor) -> torch.Tensor:
    """(3,H,W) RGB in [0,1] → (H,W) JPEG luma in level units centred on 0 (``Y·255 − 128``), float64."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64, device=img.device).view(3, 1, 1)
    return (img.to(torch.float64) * w).sum(0) * 255.0 - 128.0


def block_dct(y: torch.Tensor) -> torch.Tensor:
    """(H,W) → (H//8, W//8, 8, 8) DCT of the whole 8×8 blocks counted from the top-left corner."""
    h, w = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
    blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).permute(0, 2, 1, 3)
    d = dct_matrix(dtype=y.dtype).to(y.device)
    return d @ blocks @ d.T


def block_idct(coef: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`: (nh, nw, 8, 8) → (8·nh, 8·nw)."""
    d = dct_matrix(dtype=coef.dtype).to(coef.device)
    blocks = d.T @ coef @ d
    nh, nw = coef.shape[:2]
    return blocks.permute(0, 2, 1, 3).reshape(nh * 8, nw * 8)


def lattice_scores(values: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """How well ``values`` (all away from 0) sit on the nonzero multiples of each of ``steps``: per step, the mean
    of ``cos(2π·v/step)``, where a value in the zero bin (``|v| < step/2``) counts 0, since a coefficient quantised
    with that step could not have left 0. 1 on the lattice, about 0 off it."""
    ratio = values[:, None] / steps[None, :].to(values)
    return torch.where(ratio.round() != 0, torch.cos(2 * math.pi * ratio), torch.zeros_like(ratio)).mean(0)


def estimate_luma_table(coef: torch.Tensor, *, frequencies: int = 64, off_zero: float = 3.0, min_count: int = 40,
                        min_score: float = 0.6, max_values: int = 2048, probe: int = 5) -> torch.Tensor:
    """Blind estimate of the luma quantisation table from decoded DCT coefficients (nh, nw, 8, 8).

    Per frequency, every step is scored on the same coefficients, those at least ``off_zero`` from 0 (a coefficient
    quantised to 0 says nothing about its step; rounding in the decoder moves the others by about a level), with
    :func:`lattice_scores`. The true step and its divisors fit, its multiples do not (odd multiples of the step land
    half-way, and its first one leaves the step's own coefficients in the zero bin). So the largest fitting step
    (score ≥ ``min_score`` over at least ``min_count`` coefficients) bounds the true one from above, and the best
    score among the steps down to 3/4 of it, where no divisor can be, picks it. 0 where no step fits.

    Only the first ``frequencies`` in zig-zag order are estimated (the rest stay 0), each from at most
    ``max_values`` coefficients spread over the image; blocks flat at 0 or 255 (clipped) are skipped. When fewer
    than half of the first ``probe`` frequencies fit, the input is no JPEG and the rest are not tried.
    """
    flat = coef.reshape(-1, 64)
    dc_level = flat[:, 0] / 8.0 + 128.0
    clipped = (flat[:, 1:].abs().amax(1) < 1e-6) & ((dc_level < 0.5) | (dc_level > 254.5))
    flat = flat[~clipped]
    table = torch.zeros(64, dtype=torch.int64)
    for n, k in enumerate(ZIGZAG[:frequencies]):
        if n == probe and int((table > 0).sum()) * 2 < probe:
            break
        v = flat[:, k]
        v = v[v.abs() >= off_zero]
        if v.numel() < min_count:
            continue
        if v.numel() > max_values:
            v = v[torch.linspace(0, v.numel() - 1, max_values, device=v.device).round().long()]
        steps = torch.arange(2, min(255, int(2 * v.abs().max().item())) + 1)
        fits = torch.nonzero(lattice_scores(v, steps) >= min_score).flatten()
        if fits.numel() == 0:
            continue
        top = int(steps[fits[-1]])
        near = torch.arange(math.ceil(0.75 * top), top + 1)
        table[k] = int(near[lattice_scores(v, near).argmax()])
    return table.view(8, 8)


def matching_ijg_qualities(table: torch.Tensor, *, min_known: int = 6, tolerance: float = 0.9) -> list[int]:
    """The IJG qualities whose standard tables agree best with the known (nonzero) entries of ``table``: within 1
    (the estimate's rounding) on at least a ``tolerance`` share of them, then most often exactly. Neighbouring
    qualities share their low-frequency steps, so several may tie. Empty when fewer than ``min_known`` entries are
    known or no quality agrees."""
    known = table > 0
    if int(known.sum()) < min_known:
        return []

    def agreement(quality: int) -> tuple[float, float]:
        gap = (ijg_luma_table(quality)[known] - table[known]).abs()
        return (gap <= 1).double().mean().item(), (gap == 0).double().mean().item()
    scores = {quality: agreement(quality) for quality in range(1, 101)}
    best = max(scores.values())
    return [q for q, score in scores.items() if score == best] if best[0] >= tolerance else []


def interval_centres(coef: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The multiples of ``step`` nearest to ``coef`` (the decoded JPEG's own values, up to the decoder's rounding);
    ``coef`` itself where the step is unknown (0). ``step`` broadcasts against ``coef``."""
    known = step > 0
    return torch.where(known, torch.round(coef / torch.where(known, step, torch.ones_like(step))) * step, coef)


class JpegProjection(nn.Module):
    """Clamps the restored luma's block-DCT coefficients into the quantisation intervals of a detected JPEG input.

    The intervals hold the truth only when JPEG was the last and only damage; after noise, haze, rain or low light
    they hold the damaged image, and projecting would undo the restoration. So three checks gate it, each on one
    image (thresholds set on the held-out photos' 256² crops and whole frames, session 22):

    - ``min_flat_blocks``: at least this share of the input's blocks are bare DC (every AC coefficient in its zero
      bin). JPEG keeps a clean photo's sky and walls as bare DC; noise added before the compression leaves AC in
      nearly every block (at most 1.3 % bare on whole photos with σ 10–15 noise, against 3.4–73 % without).
    - ``max_moved_dc``: at most this share of the restored blocks have left their input DC interval. Brightening,
      dehazing and deraining move the block means by more than a step (70–100 % of blocks); deblocking does not.
    - ``max_moved_ac``: at most this share of the input's nonzero AC coefficients lie outside their intervals in
      the restoration; removing noise JPEG kept moves 70–95 % of them. 0.6 until session 32, when the
      twenty-first release's U-Net moved 62.5 % on a dark held-out crop at q30 4:2:2 (the twentieth: 57.1 %) and
      the crop lost the JPEG expert; at 0.65 it is routed again, and none of 225 other crops of JPEG alone, σ 5–10
      noise or blur before the compression changed its output.
    """

    def __init__(self, *, min_flat_blocks: float = 0.02, max_moved_dc: float = 0.6, max_moved_ac: float = 0.65,
                 min_known: int = 6, min_known_standard: int = 4) -> None:
        super().__init__()
        self.min_flat_blocks = min_flat_blocks
        self.max_moved_dc = max_moved_dc
        self.max_moved_ac = max_moved_ac
        self.min_known = min_known
        self.min_known_standard = min(min_known_standard, min_known)

    def table_for(self, degraded: torch.Tensor) -> torch.Tensor | None:
        """The luma table to project with for one (3,H,W) input, or None when it does not look like a JPEG. The
        first 15 zig-zag frequencies usually name the IJG quality, whose whole table is then used (the largest
        step of the qualities that tie, so that no interval is too narrow); ``min_known_standard`` of them that agree
        with a standard table are enough (a small smooth image, a 256² patch of sky, has only 4-5 measurable ones).
        Other tables need ``min_known`` and are estimated in full."""
        return self.table_from(block_dct(luma_levels(degraded)))

    def table_from(self, coef: torch.Tensor) -> torch.Tensor | None:
        """:meth:`table_for` from the input's block DCT (nh, nw, 8, 8)."""
        table = estimate_luma_table(coef, frequencies=15)
        known = int((table > 0).sum())
        if known < self.min_known_standard:
            return None
        qualities = matching_ijg_qualities(table, min_known=self.min_known_standard)
        if qualities:
            return torch.stack([ijg_luma_table(q) for q in qualities]).amax(0)
        if known < self.min_known:
            return None
        table = estimate_luma_table(coef)
        return table if int((table > 0).sum()) >= self.min_known else None

    @staticmethod
    def gate_statistics(c_in: torch.Tensor, c_out: torch.Tensor, table: torch.Tensor) -> dict[str, float]:
        """The three shares the gate reads (see the class), from input and restored block DCTs (nh, nw, 8, 8)."""
        c_in, c_out = c_in.reshape(-1, 64), c_out.reshape(-1, 64)
        step = table.reshape(64).to(c_in)
        known = step > 0
        centre = interval_centres(c_in, step)
        outside = ((c_out - centre).abs() > step / 2) & known
        zero_bin_limit = torch.where(known, step / 2, torch.full_like(step, 3.0))
        flat = (c_in[:, 1:].abs() < zero_bin_limit[1:]).all(1)
        nonzero_ac = (centre != 0) & known
        nonzero_ac[:, 0] = False
        return {"flat_blocks": flat.double().mean().item(),
                "moved_dc": outside[:, 0].double().mean().item() if bool(known[0]) else 0.0,
                "moved_ac": (outside & nonzero_ac).sum().item() / max(1, int(nonzero_ac.sum()))}

    def passes(self, stats: dict[str, float]) -> bool:
        """Whether :meth:`gate_statistics` ``stats`` let the projection run."""
        return (stats["flat_blocks"] >= self.min_flat_blocks and stats["moved_dc"] <= self.max_moved_dc
                and stats["moved_ac"] <= self.max_moved_ac)

    def project(self, degraded: torch.Tensor, restored: torch.Tensor, table: torch.Tensor,
                *, gated: bool = True, input_coef: torch.Tensor | None = None) -> torch.Tensor:
        """Luma projection of one (3,H,W) ``restored`` onto the intervals of ``degraded`` under ``table``;
        ``restored`` unchanged when ``gated`` and the gate (see the class) refuses. ``input_coef``: the input's block
        DCT when the caller has it already."""
        y_out = luma_levels(restored)
        c_in = block_dct(luma_levels(degraded)) if input_coef is None else input_coef
        c_out = block_dct(y_out)
        if gated and not self.passes(self.gate_statistics(c_in, c_out, table)):
            return restored
        step = table.to(c_in)
        centre = interval_centres(c_in, step)
        projected = torch.where(step > 0, torch.minimum(torch.maximum(c_out, centre - step / 2), centre + step / 2),
                                c_out)
        change = torch.zeros_like(y_out)
        nh, nw = c_in.shape[:2]
        change[: nh * 8, : nw * 8] = block_idct(projected - c_out)
        return (restored + (change / 255.0).to(restored.dtype)).clamp(0.0, 1.0)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        if degraded.shape[1] != 3 or min(degraded.shape[-2:]) < 64:
            return restored
        out = []
        for x, y in zip(degraded, restored):
            coef = block_dct(luma_levels(x))  # once per image: the table and the projection both read it
            table = self.table_from(coef)
            out.append(y if table is None else self.project(x, y, table, input_coef=coef))
        return torch.stack(out)
