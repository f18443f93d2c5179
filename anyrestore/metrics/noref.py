"""No-reference metrics.

NIQE and PIQE need a natural-scene-statistics model fitted on a pristine image corpus (the MATLAB ``modelparameters``).
anyrestore does not ship such a model yet, so these functions raise instead of returning an invented number.
"""
from __future__ import annotations

from anyrestore.errors import AnyRestoreError


class MetricNotAvailableError(AnyRestoreError, NotImplementedError):
    """The metric exists in the API but cannot be computed by this installation."""


def niqe(image, *, crop_border: int = 0) -> float:
    """Naturalness Image Quality Evaluator. Not available yet: always raises :class:`MetricNotAvailableError`."""
    raise MetricNotAvailableError(
        "NIQE is not available: it needs a pristine-image NSS model that anyrestore does not ship yet; "
        "use a full-reference metric (psnr, ssim) with ground truth instead"
    )
