"""Image-quality metrics. Full-reference PSNR/SSIM under named protocols (see :mod:`anyrestore.metrics.fullref`)."""
from anyrestore.metrics.fullref import (
    PROTOCOLS,
    MetricInputError,
    Protocol,
    dataset_mean,
    get_protocol,
    psnr,
    rgb_to_y,
    ssim,
)
from anyrestore.metrics.noref import MetricNotAvailableError, niqe

__all__ = ["PROTOCOLS", "MetricInputError", "MetricNotAvailableError", "Protocol", "dataset_mean", "get_protocol",
           "niqe", "psnr", "rgb_to_y", "ssim"]
