"""The catalog: every degradation type by name, its parameters (valid limits, default training range, named levels,
degree classes) and the published setting tables (RAM, UniRestorer, MaskDCPT).

Range specs (JSON/YAML friendly) used everywhere a parameter is sampled:
    ``25``                     constant
    ``[lo, hi]``               continuous uniform
    ``{"int": [lo, hi]}``      integer uniform, both ends included
    ``{"log": [lo, hi]}``      log-uniform
    ``{"choice": [a, b, ...]}`` uniform choice
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from anyrestore.degradations import blur, jpeg as jpeg_ops, light, mosaic as mosaic_ops, noise, weather
from anyrestore.errors import ConfigError

ODD_KERNELS = [7, 9, 11, 13, 15, 17, 19, 21]


@dataclass(frozen=True)
class Param:
    """One scalar parameter of a degradation type: valid limits (inclusive) and default training range."""

    name: str
    lo: float
    hi: float
    default: object
    integer: bool = False
    odd: bool = False
    help: str = ""


@dataclass(frozen=True)
class DegradationType:
    """A named degradation: op adapter, parameters, options, named levels and degree rule."""

    name: str
    description: str
    apply: Callable  # (img, params: dict[str, Tensor(B,)], generators: list, options: dict) -> img
    params: tuple[Param, ...] = ()
    options: dict = field(default_factory=dict)  # option -> (default, allowed values)
    levels: dict = field(default_factory=dict)  # level name -> {param: value}
    primary: str | None = None  # parameter a bare number sets ("noise:25" -> sigma = 25)
    short: dict = field(default_factory=dict)  # short codes for levels ("k15s2.0")
    degree: Callable | None = None  # params -> "light" | "medium" | "heavy" (None: use range tertiles)
    synthetic: str = "yes"  # "yes" | "approx" (a real benchmark needs paired data)
    sample_hook: Callable | None = None  # (params, generator, options) -> params, for coupled draws

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(f"degradation {self.name!r} has no parameter {name!r}; "
                          f"parameters: {', '.join(p.name for p in self.params) or 'none'}")


# ------------------------------------------------------------------------------------------------ range specs
def draw(spec, generator: torch.Generator | None) -> float:
    """Draw one value from a range spec (see the module docstring) with ``generator``."""
    if isinstance(spec, bool):
        raise ConfigError(f"invalid range spec {spec!r}")
    if isinstance(spec, (int, float)):
        return float(spec)
    u = float(torch.rand((), generator=generator))
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        lo, hi = float(spec[0]), float(spec[1])
        return lo + (hi - lo) * u
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, vals), = spec.items()
        if kind == "int":
            lo, hi = int(vals[0]), int(vals[1])
            return float(min(hi, lo + int(u * (hi - lo + 1))))
        if kind == "log":
            lo, hi = math.log(float(vals[0])), math.log(float(vals[1]))
            return math.exp(lo + (hi - lo) * u)
        if kind == "choice" and len(vals) > 0:
            return float(vals[min(len(vals) - 1, int(u * len(vals)))])
    raise ConfigError(f"invalid range spec {spec!r}: use a number, [lo, hi], {{'int': [lo, hi]}}, "
                      "{'log': [lo, hi]} or {'choice': [...]}")


def spec_bounds(spec) -> tuple[float, float]:
    """(min, max) a range spec can produce."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec), float(spec)
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        return float(spec[0]), float(spec[1])
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, vals), = spec.items()
        if kind in ("int", "log") and len(vals) == 2:
            return float(vals[0]), float(vals[1])
        if kind == "choice" and len(vals) > 0:
            return float(min(vals)), float(max(vals))
    draw(spec, None)  # raises the descriptive error
    raise ConfigError(f"invalid range spec {spec!r}")


def check_value(dtype: DegradationType, name: str, value: float) -> None:
    p = dtype.param(name)
    if not (p.lo <= value <= p.hi):
        raise ConfigError(f"{dtype.name}: parameter {name}={value:g} out of range [{p.lo:g}, {p.hi:g}]")
    if (p.integer or p.odd) and value != int(value):
        raise ConfigError(f"{dtype.name}: parameter {name}={value:g} must be an integer")
    if p.odd and int(value) % 2 == 0:
        raise ConfigError(f"{dtype.name}: parameter {name}={value:g} must be odd")


def check_spec(dtype: DegradationType, name: str, spec) -> None:
    lo, hi = spec_bounds(spec)
    check_value(dtype, name, lo)
    check_value(dtype, name, hi)
    if isinstance(spec, dict) and "choice" in spec:
        for v in spec["choice"]:
            check_value(dtype, name, float(v))


# ------------------------------------------------------------------------------------------------ degree rules
def _bins(value: float, edges: tuple[float, float], names=("light", "medium", "heavy")) -> str:
    if value < edges[0]:
        return names[0]
    return names[1] if value < edges[1] else names[2]


def _two(value: float, edge: float) -> str:
    return "light" if value < edge else "heavy"


# UniRestorer §8.3 thresholds (project values; the paper's are lost)
def _noise_degree(p):
    return _bins(p["sigma"], (20, 35))


def _jpeg_degree(p):
    return "light" if p["quality"] >= 25 else ("medium" if p["quality"] >= 15 else "heavy")


def _rain_degree(p):
    return _bins(p["count"], (67, 84))


def _snow_degree(p):
    return _bins(p["density"], (4, 8))


TWO_DEGREES = ("haze", "low_light", "shake_blur", "motion_blur")


def degree_names(dtype: "DegradationType") -> tuple[str, ...]:
    """Degree classes a type can produce."""
    return ("light", "heavy") if dtype.name in TWO_DEGREES else ("light", "medium", "heavy")


# ------------------------------------------------------------------------------------------------ op adapters
def _i(t: torch.Tensor) -> torch.Tensor:
    return t.round()


def _identity(img, p, g, o):
    return img.clone()


def _noise(img, p, g, o):
    return noise.gaussian_noise(img, sigma=p["sigma"], generator=g, quantize=o["quantize"])


def _iso_blur(img, p, g, o):
    return blur.gaussian_blur(img, sigma=p["sigma"], kernel_size=_i(p["kernel_size"]))


def _aniso_blur(img, p, g, o):
    return blur.gaussian_blur(img, sigma=p["sigma_x"], sigma_y=p["sigma_y"], theta=p["theta"],
                              kernel_size=_i(p["kernel_size"]))


def _aniso_hook(params, gen, options):
    if float(torch.rand((), generator=gen)) >= options["anisotropic_prob"]:
        params["sigma_y"] = params["sigma_x"]
        params["theta"] = 0.0
    return params


def _sinc_hook(params, gen, options):
    # Real-ESRGAN: cut-off in [pi/3, pi] for kernels smaller than 13, [pi/5, pi] otherwise
    if params["kernel_size"] < 13:
        params["omega_c"] = max(params["omega_c"], math.pi / 3)
    return params


def _motion_hook(params, gen, options):
    params["length"] = min(params["length"], params["kernel_size"])
    return params


T = DegradationType
_TYPES: list[DegradationType] = [
    T("identity", "no degradation (LQ = GT)", _identity),
    T("noise", "additive white Gaussian noise, sigma on 0-255", _noise,
      (Param("sigma", 0, 255, [0, 50], help="std on the 0-255 scale"),),
      options={"quantize": ("round", noise.QUANTIZE_MODES)},
      levels={"low": {"sigma": 10}, "medium": {"sigma": 25}, "high": {"sigma": 50}},
      primary="sigma", short={"s": "sigma"}, degree=_noise_degree),
    T("poisson", "shot noise Poisson(x*peak)/peak (variance proportional to intensity)",
      lambda img, p, g, o: noise.poisson_noise(img, peak=p["peak"], generator=g),
      (Param("peak", 1, 1e5, {"log": [8, 200]}, help="photons at intensity 1 (smaller = noisier)"),),
      levels={"low": {"peak": 200}, "medium": {"peak": 50}, "high": {"peak": 12}}, primary="peak",
      degree=lambda p: "light" if p["peak"] >= 80 else ("medium" if p["peak"] >= 25 else "heavy")),
    T("salt_pepper", "salt-and-pepper impulses on a fraction of pixels",
      lambda img, p, g, o: noise.salt_pepper_noise(img, density=p["density"], generator=g),
      (Param("density", 0, 1, [0.01, 0.1]),),
      levels={"low": {"density": 0.01}, "medium": {"density": 0.05}, "high": {"density": 0.15}}, primary="density"),
    T("speckle", "multiplicative Gaussian noise x*(1+n)",
      lambda img, p, g, o: noise.speckle_noise(img, sigma=p["sigma"], generator=g),
      (Param("sigma", 0, 2, [0.05, 0.3]),),
      levels={"low": {"sigma": 0.05}, "medium": {"sigma": 0.15}, "high": {"sigma": 0.3}}, primary="sigma"),
    T("camera_noise", "signal-dependent sensor noise, variance shot*x + read^2, 8-bit output",
      lambda img, p, g, o: noise.camera_noise(img, shot=p["shot"], read=p["read"], generator=g),
      (Param("shot", 0, 0.1, {"log": [1e-4, 1e-2]}), Param("read", 0, 0.1, {"log": [1e-3, 2e-2]})),
      levels={"low": {"shot": 5e-4, "read": 2e-3}, "medium": {"shot": 3e-3, "read": 8e-3},
              "high": {"shot": 1e-2, "read": 2e-2}},
      degree=lambda p: _bins(math.sqrt(p["shot"] * 0.5 + p["read"] ** 2) * 255, (10, 20))),
    T("blur", "isotropic Gaussian blur (OpenCV-style kernel, reflect-101 borders)", _iso_blur,
      (Param("kernel_size", 1, 63, {"choice": ODD_KERNELS}, odd=True), Param("sigma", 0.05, 20, [0.5, 3.0])),
      levels={"low": {"kernel_size": 15, "sigma": 1.0}, "medium": {"kernel_size": 15, "sigma": 2.0},
              "high": {"kernel_size": 21, "sigma": 3.0}},
      primary="sigma", short={"k": "kernel_size", "s": "sigma"},
      degree=lambda p: _bins(p["sigma"], (1.5, 2.5))),
    T("aniso_blur", "isotropic or anisotropic (rotated) Gaussian blur, Real-ESRGAN style", _aniso_blur,
      (Param("kernel_size", 1, 63, {"choice": ODD_KERNELS}, odd=True), Param("sigma_x", 0.05, 20, [0.5, 3.0]),
       Param("sigma_y", 0.05, 20, [0.5, 3.0]), Param("theta", -math.pi, math.pi, [-math.pi, math.pi])),
      options={"anisotropic_prob": (0.5, None)},
      levels={"low": {"kernel_size": 15, "sigma_x": 1.5, "sigma_y": 0.7, "theta": 0.5},
              "medium": {"kernel_size": 15, "sigma_x": 2.5, "sigma_y": 1.2, "theta": 0.5},
              "high": {"kernel_size": 21, "sigma_x": 4.0, "sigma_y": 2.0, "theta": 0.5}},
      short={"k": "kernel_size", "x": "sigma_x", "y": "sigma_y", "t": "theta"},
      degree=lambda p: _bins(max(p["sigma_x"], p["sigma_y"]), (1.5, 2.5)), sample_hook=_aniso_hook),
    T("motion_blur", "linear motion blur (a straight segment kernel)",
      lambda img, p, g, o: blur.motion_blur(img, length=p["length"], angle=p["angle"],
                                            kernel_size=_i(p["kernel_size"])),
      (Param("kernel_size", 1, 81, {"choice": [7, 11, 15, 19, 23, 27, 31]}, odd=True),
       Param("length", 1, 81, [3, 25]), Param("angle", -180, 180, [0, 180])),
      levels={"low": {"kernel_size": 9, "length": 7, "angle": 30}, "medium": {"kernel_size": 17, "length": 15, "angle": 30},
              "high": {"kernel_size": 27, "length": 25, "angle": 30}},
      primary="length", short={"k": "kernel_size", "l": "length", "a": "angle"},
      degree=lambda p: _two(p["kernel_size"], 17), synthetic="approx", sample_hook=_motion_hook),
    T("shake_blur", "camera-shake blur along a random smooth trajectory (fills a kernel of the given size)",
      lambda img, p, g, o: blur.trajectory_blur(img, length=(p["kernel_size"] - 2).clamp_min(1),
                                                kernel_size=_i(p["kernel_size"]),
                                                generator=g),
      (Param("kernel_size", 3, 81, {"choice": list(range(5, 30, 2))}, odd=True),),
      levels={"low": {"kernel_size": 9}, "medium": {"kernel_size": 17}, "high": {"kernel_size": 29}},
      primary="kernel_size", short={"k": "kernel_size"},
      degree=lambda p: _two(p["kernel_size"], 17), synthetic="approx"),
    T("defocus_blur", "defocus blur (uniform disc kernel)",
      lambda img, p, g, o: blur.defocus_blur(img, radius=p["radius"]),
      (Param("radius", 0.5, 30, [1.0, 6.0]),),
      levels={"low": {"radius": 1.5}, "medium": {"radius": 3.5}, "high": {"radius": 6.0}}, primary="radius",
      short={"r": "radius"}, synthetic="approx"),
    T("sinc_blur", "ringing low-pass (2-D sinc) blur, Real-ESRGAN sinc kernels",
      lambda img, p, g, o: blur.sinc_blur(img, omega_c=p["omega_c"], kernel_size=_i(p["kernel_size"])),
      (Param("kernel_size", 3, 63, {"choice": ODD_KERNELS}, odd=True),
       Param("omega_c", 0.05, math.pi, [math.pi / 5, math.pi])),
      levels={"low": {"kernel_size": 11, "omega_c": 2.5}, "medium": {"kernel_size": 15, "omega_c": 1.5},
              "high": {"kernel_size": 21, "omega_c": 0.7}},
      short={"k": "kernel_size", "w": "omega_c"},
      degree=lambda p: "light" if p["omega_c"] >= 2.0 else ("medium" if p["omega_c"] >= 1.0 else "heavy"),
      sample_hook=_sinc_hook),
    T("jpeg", "JPEG compression with OpenCV's encoder (4:2:0)",
      lambda img, p, g, o: jpeg_ops.jpeg(img, quality=_i(p["quality"])),
      (Param("quality", 1, 100, {"int": [10, 95]}, integer=True),),
      levels={"low": {"quality": 70}, "medium": {"quality": 40}, "high": {"quality": 10}},
      primary="quality", short={"q": "quality"}, degree=_jpeg_degree),
    T("haze", "atmospheric scattering J*t + A*(1-t), t = exp(-beta*depth), synthetic depth prior",
      lambda img, p, g, o: weather.haze(img, beta=p["beta"], airlight=p["airlight"], generator=g),
      (Param("beta", 0, 10, [0.5, 2.5]), Param("airlight", 0, 1, [0.8, 1.0])),
      levels={"low": {"beta": 0.8, "airlight": 0.9}, "medium": {"beta": 1.5, "airlight": 0.9},
              "high": {"beta": 2.5, "airlight": 0.9}},
      primary="beta", short={"b": "beta", "a": "airlight"}, degree=lambda p: _two(p["beta"], 1.5), synthetic="approx"),
    T("rain", "rain streaks (MiOIR-style streak layer added to the image)",
      lambda img, p, g, o: weather.rain(img, count=p["count"], angle=p["angle"], length=_i(p["length"]),
                                        width=_i(p["width"]), generator=g),
      (Param("count", 0, 1000, [50, 100]), Param("angle", -90, 90, {"int": [-45, 44]}, integer=True),
       Param("length", 1, 99, {"int": [20, 40]}, integer=True),
       Param("width", 1, 15, {"choice": [3, 5, 7, 9, 11]}, odd=True)),
      levels={"low": {"count": 55, "angle": 10, "length": 25, "width": 3},
              "medium": {"count": 75, "angle": 10, "length": 30, "width": 5},
              "high": {"count": 95, "angle": 10, "length": 35, "width": 7}},
      primary="count", short={"v": "count", "a": "angle", "l": "length", "w": "width"}, degree=_rain_degree,
      synthetic="approx"),
    T("raindrop", "adherent raindrops (procedural lens-like drops)",
      lambda img, p, g, o: weather.raindrop(img, count=_i(p["count"]), radius=p["radius"], generator=g),
      (Param("count", 0, 500, {"int": [5, 30]}, integer=True), Param("radius", 1, 64, [4.0, 12.0])),
      levels={"low": {"count": 6, "radius": 5}, "medium": {"count": 15, "radius": 8}, "high": {"count": 30, "radius": 12}},
      primary="count", synthetic="approx"),
    T("snow", "procedural snow layers composited as I*(1-M) + M",
      lambda img, p, g, o: weather.snow(img, density=p["density"], radius=p["radius"], layers=_i(p["layers"]),
                                        hardness=p["hardness"], generator=g),
      (Param("density", 0, 100, [2.0, 12.0]), Param("radius", 0.5, 20, [1.0, 4.0]),
       Param("layers", 1, 3, {"int": [1, 3]}, integer=True), Param("hardness", 0, 1, 0.0)),
      levels={"low": {"density": 3, "radius": 1.5, "layers": 1}, "medium": {"density": 6, "radius": 2.5, "layers": 2},
              "high": {"density": 10, "radius": 3.5, "layers": 3},
              "S": {"density": 3, "radius": 1.5, "layers": 1}, "M": {"density": 6, "radius": 2.5, "layers": 2},
              "L": {"density": 10, "radius": 3.5, "layers": 3}},
      primary="density", degree=_snow_degree, synthetic="approx"),
    T("low_light", "Retinex darkening R*scale*L^gamma (illumination from guided-filtered RGB max)",
      lambda img, p, g, o: light.low_light(img, gamma=p["gamma"], scale=p["scale"]),
      (Param("gamma", 0.1, 10, [1.0, 3.0]), Param("scale", 0.01, 1, 1.0)),
      levels={"low": {"gamma": 1.5, "scale": 1.0}, "medium": {"gamma": 2.2, "scale": 0.8},
              "high": {"gamma": 3.0, "scale": 0.5}},
      primary="gamma", short={"g": "gamma", "s": "scale"}, degree=lambda p: _two(p["gamma"], 2.0), synthetic="approx"),
    T("over_exposure", "over-exposure by ev stops on linearised values",
      lambda img, p, g, o: light.over_exposure(img, ev=p["ev"]),
      (Param("ev", 0, 6, [0.5, 2.0]),),
      levels={"low": {"ev": 0.5}, "medium": {"ev": 1.2}, "high": {"ev": 2.0}}, primary="ev"),
    T("mosaic", "Bayer CFA sampling + bilinear demosaic",
      lambda img, p, g, o: mosaic_ops.mosaic(img, pattern=o["pattern"], method=o["method"]),
      options={"pattern": ("RGGB", mosaic_ops.PATTERNS), "method": ("bilinear", mosaic_ops.DEMOSAIC_METHODS)},
      levels={"low": {}, "medium": {}, "high": {}}),
    T("downsample", "down-sampling by a factor and re-up-sampling to the input size",
      lambda img, p, g, o: mosaic_ops.resample(img, scale=p["scale"], mode=o["mode"]),
      (Param("scale", 1, 16, [2.0, 4.0]),),
      options={"mode": ("bicubic", mosaic_ops.RESAMPLE_MODES)},
      levels={"low": {"scale": 1.5}, "medium": {"scale": 2.5}, "high": {"scale": 4.0}}, primary="scale"),
    T("color_shift", "colour cast: one gain per RGB channel",
      lambda img, p, g, o: mosaic_ops.color_shift(img, gain_r=p["gain_r"], gain_g=p["gain_g"], gain_b=p["gain_b"]),
      (Param("gain_r", 0, 3, [0.8, 1.2]), Param("gain_g", 0, 3, [0.8, 1.2]), Param("gain_b", 0, 3, [0.8, 1.2])),
      levels={"low": {"gain_r": 1.05, "gain_g": 1.0, "gain_b": 0.95},
              "medium": {"gain_r": 1.15, "gain_g": 1.0, "gain_b": 0.85},
              "high": {"gain_r": 1.3, "gain_g": 1.0, "gain_b": 0.7}}),
]
del T
TYPES: dict[str, DegradationType] = {t.name: t for t in _TYPES}

# Order used for "a+b+c" mixtures (whatever order they are written in): UniRestorer's low-light -> blur -> noise
# -> rain -> snow -> haze -> JPEG, with the other types slotted where a camera pipeline puts them.
CANONICAL_ORDER: tuple[str, ...] = (
    "low_light", "over_exposure", "color_shift", "blur", "aniso_blur", "motion_blur", "shake_blur", "defocus_blur",
    "sinc_blur", "downsample", "mosaic", "noise", "poisson", "camera_noise", "speckle", "salt_pepper", "rain",
    "raindrop", "snow", "haze", "jpeg",
)
assert set(CANONICAL_ORDER) == set(TYPES) - {"identity"}

ALIASES = {"lowlight": "low_light", "gaussian_noise": "noise", "gaussian_blur": "blur", "defocus": "defocus_blur",
           "motion": "motion_blur", "shake": "shake_blur", "sp": "salt_pepper", "pepper": "salt_pepper",
           "overexposure": "over_exposure", "clean": "identity", "sinc": "sinc_blur", "ll": "low_light"}


def get_type(name: str) -> DegradationType:
    """Look a type up by name (or alias); raises ConfigError naming the known types."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in TYPES:
        import difflib

        close = difflib.get_close_matches(key, list(TYPES) + list(ALIASES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown degradation type {name!r}{hint}; known: {', '.join(TYPES)}")
    return TYPES[key]


def list_types() -> list[str]:
    """Names of all degradation types in the catalog."""
    return list(TYPES)


def parse_level(dtype: DegradationType, level: str) -> dict[str, float]:
    """Resolve a level string: a named level ("low", "S"), a number for the primary parameter ("25"), or short
    codes ("k15s2.0" = kernel_size 15, sigma 2.0). Missing parameters keep their defaults' midpoints."""
    level = str(level).strip()
    if level in dtype.levels:
        return dict(dtype.levels[level])
    try:
        value = float(level)
    except ValueError:
        value = None
    if value is not None:
        if dtype.primary is None:
            raise ConfigError(f"{dtype.name}: level {level!r} is a number but the type has no primary parameter; "
                              f"levels: {', '.join(dtype.levels)}")
        return {dtype.primary: value}
    pairs = re.findall(r"([a-z]+)(-?[0-9]*\.?[0-9]+)", level)
    if pairs and "".join(k + v for k, v in pairs) == level and all(k in dtype.short for k, _ in pairs):
        return {dtype.short[k]: float(v) for k, v in pairs}
    raise ConfigError(f"{dtype.name}: unknown level {level!r}; named levels: {', '.join(dtype.levels) or 'none'}"
                      + (f"; short codes: {', '.join(f'{k}=<{v}>' for k, v in dtype.short.items())}" if dtype.short else ""))


# ------------------------------------------------------------------------------------------------ setting tables
RAM_TRAIN = {
    # ram.md §10.4 (D5). Noise is quantised by truncation to uint8 in both presets.
    "official-code": {
        "noise": {"sigma": {"int": [0, 50]}, "quantize": "truncate"},
        "blur": {"kernel_size": 15, "sigma": {"choice": [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0]}},
        "jpeg": {"quality": {"int": [10, 90]}},
        "identity": {},
    },
    "paper": {
        "noise": {"sigma": [0.0, 50.0], "quantize": "truncate"},
        "blur": {"kernel_size": 15, "sigma": [0.1, 3.1]},
        "jpeg": {"quality": {"int": [20, 90]}},
    },
}
RAM_TEST = {  # ram.md §7.1: LSDIR-val centre 512 crop + these; CBSD68 uses the public pre-noised PNGs
    "blur": "blur:k15s2.0", "jpeg": "jpeg:50", "noise": ["noise:15", "noise:25", "noise:50"],
}

UNIRESTORER = {
    # unirestorer.md §8.2 (mixed setting), project values where the paper's are lost
    "in": {
        "low_light": {"gamma": [1.0, 3.0]},
        "aniso_blur": {"kernel_size": {"choice": ODD_KERNELS}, "sigma_x": [1.0, 3.0], "sigma_y": [1.0, 3.0]},
        "noise": {"sigma": {"int": [15, 50]}, "quantize": "none"},
        "rain": {"count": [50.0, 99.999]},
        "snow": {"density": [2.0, 12.0], "radius": [1.0, 4.0]},
        "haze": {"beta": [0.5, 2.5], "airlight": [0.8, 1.0]},
        "jpeg": {"quality": {"int": [30, 70]}},
    },
    "out": {
        "low_light": {"gamma": [3.0, 4.0]},
        "aniso_blur": {"kernel_size": {"choice": [15, 17, 19, 21]}, "sigma_x": [3.0, 5.0], "sigma_y": [3.0, 5.0]},
        "noise": {"sigma": {"int": [50, 70]}, "quantize": "none"},
        "rain": {"count": [100.0, 149.999]},
        "snow": {"density": [12.0, 18.0], "radius": [4.0, 6.0]},
        "haze": {"beta": [2.5, 3.0], "airlight": [0.8, 1.0]},
        "jpeg": {"quality": {"int": [10, 30]}},
    },
    # single-degradation setting (§8.3: sampling ranges are the unions of the degree bins)
    "single": {
        "noise": {"sigma": {"int": [5, 50]}, "quantize": "round"},
        "jpeg": {"quality": {"int": [5, 50]}},
        "rain": {"count": [50.0, 99.999]},
        "snow": {"density": [2.0, 12.0], "radius": [1.0, 4.0]},
        "haze": {"beta": [0.5, 2.5], "airlight": [0.8, 1.0]},
        "low_light": {"gamma": [1.0, 3.0]},
        "shake_blur": {"kernel_size": {"choice": list(range(5, 30, 2))}},
    },
    "out_single": {"shake_blur": {"kernel_size": {"choice": [31, 33, 35, 37, 39, 41]}}},
}
UNIRESTORER_ORDER = ("low_light", "aniso_blur", "noise", "rain", "snow", "haze", "jpeg")
UNIRESTORER_COMBOS = {  # Table 2 test combinations (applied in pipeline order)
    "H-R": ("haze", "rain"), "H-N": ("haze", "noise"), "H-N-R": ("haze", "noise", "rain"),
    "LL-H-N-R": ("low_light", "haze", "noise", "rain"), "LL-H-N-S": ("low_light", "haze", "noise", "snow"),
    "LL-H-N-B-R": ("low_light", "haze", "noise", "aniso_blur", "rain"),
    "LL-H-N-B-S": ("low_light", "haze", "noise", "aniso_blur", "snow"),
}
UNIRESTORER_DEGREES = {  # unirestorer.md §8.3, documented thresholds (see the degree rules above)
    "noise": "sigma [5,20) light, [20,35) medium, [35,50] heavy",
    "jpeg": "q [25,50] light, [15,25) medium, [5,15) heavy",
    "rain": "count [50,67) light, [67,84) medium, [84,100) heavy",
    "snow": "density <4 S (light), <8 M (medium), else L (heavy)",
    "haze": "beta <1.5 light, >=1.5 heavy",
    "shake_blur": "kernel size <17 light, >=17 heavy",
    "low_light": "gamma [1,2) light, [2,3] heavy",
}

MASKDCPT_TASKS = {
    # maskdcpt.md §5 presets; value = catalog type(s) synthesising the class, None = paired real data only
    "5d": {"noise": ["noise", "poisson", "salt_pepper"], "rain": ["rain"], "haze": ["haze"],
           "motion_blur": ["shake_blur", "motion_blur"], "low_light": ["low_light"]},
    "12d": {"rain": ["rain"], "haze": ["haze"], "snow": ["snow"], "raindrop": ["raindrop"], "low_light": ["low_light"],
            "motion_blur": ["shake_blur", "motion_blur"], "defocus_blur": ["defocus_blur"], "jpeg": ["jpeg"],
            "noise": ["noise", "poisson", "salt_pepper"], "gaussian_blur": ["aniso_blur", "sinc_blur"],
            "mosaic": ["mosaic"], "moire": None},
}
UIR19_SYNTH = {  # maskdcpt.md §9: type -> "yes" | "approx" | "no"
    "GN": "yes", "RN": "no", "MB": "approx", "DB": "approx", "GB": "yes", "J": "yes", "H": "approx", "RS": "approx",
    "RD": "no", "RSD": "no", "S": "approx", "MS": "yes", "LL": "approx", "MR": "no", "blur+jpeg": "approx",
    "blur+rain": "no", "blur+lowlight+noise": "approx", "lowlight+haze+rain+snow": "approx",
    "downsample+noise+blur+jpeg": "yes",
}
