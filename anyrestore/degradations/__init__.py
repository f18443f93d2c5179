"""Degradation library: batched ops on (B,C,H,W) float tensors in [0,1], a catalog of named types, and samplers.

    from anyrestore.degradations import build_sampler, list_types
    sampler = build_sampler("default-model")       # or "noise:25", "blur+noise+jpeg", "ram-official-code", ...
    lq, labels = sampler(clean, generator)           # labels[i]: type, level, params, class_index, steps, ...
    sampler.num_classes

The ops live in ``noise``, ``blur``, ``jpeg``, ``weather``, ``light`` and ``mosaic`` (``jpeg.jpeg`` and ``mosaic.mosaic``
are not re-exported, so those two names keep meaning the modules); ``catalog`` holds the types, levels and published
ranges, ``pipeline`` the samplers and presets.
"""
from anyrestore.degradations.blur import (defocus_blur, gaussian_blur, motion_blur, sinc_blur,
                                          trajectory_blur)
from anyrestore.degradations.catalog import TYPES, get_type, list_types, parse_level
from anyrestore.degradations.light import low_light, over_exposure
from anyrestore.degradations.mosaic import color_shift, resample
from anyrestore.degradations.noise import camera_noise, gaussian_noise, poisson_noise, salt_pepper_noise, speckle_noise
from anyrestore.degradations.pipeline import (ChainSampler, MixtureSampler, Sampler, SingleSampler, Step,
                                              build_sampler, degrade, list_presets)
from anyrestore.degradations.weather import haze, rain, raindrop, snow

__all__ = [
    "TYPES", "ChainSampler", "MixtureSampler", "Sampler", "SingleSampler", "Step", "build_sampler", "camera_noise",
    "color_shift", "defocus_blur", "degrade", "gaussian_blur", "gaussian_noise", "get_type", "haze", "list_presets",
    "list_types", "low_light", "motion_blur", "over_exposure", "parse_level", "poisson_noise", "rain",
    "raindrop", "resample", "salt_pepper_noise", "sinc_blur", "snow", "speckle_noise", "trajectory_blur",
]
