"""Samplers: determinism, batching equivalence, labels, presets and spec errors."""
import math

import pytest
import torch

from anyrestore.degradations import build_sampler, catalog, list_presets, list_types
from anyrestore.degradations.pipeline import (DEFAULT_MODEL_BALANCED_WEIGHTS, DEFAULT_MODEL_NOISE_BLUR_WEIGHTS,
                                             DEFAULT_MODEL_WEIGHTS)
from anyrestore.errors import AnyRestoreError, ConfigError

SPECS = list_presets() + ["noise", "noise:25", "jpeg:50", "blur:k15s2.0", "blur+noise+jpeg", "haze+rain",
                          "unirestorer-in:LL-H-N-B-S", "unirestorer-out:H-N-R", "poisson", "salt_pepper",
                          "speckle", "camera_noise", "aniso_blur", "motion_blur", "shake_blur", "defocus_blur",
                          "sinc_blur", "raindrop", "snow:L", "over_exposure", "mosaic", "downsample", "color_shift",
                          {"type": "noise", "sigma": [5, 10], "quantize": "none"}]


@pytest.fixture(scope="module")
def clean():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(123))


def g(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_same_seed_identical_batched_equals_loop(spec, clean):
    sampler = build_sampler(spec)
    lq1, lab1 = sampler(clean, g(7))
    lq2, lab2 = sampler(clean, g(7))
    assert torch.equal(lq1, lq2) and lab1 == lab2
    assert lq1.shape == clean.shape and lq1.dtype == clean.dtype
    assert lq1.min() >= 0 and lq1.max() <= 1
    loop_gen = g(7)
    parts = [sampler(clean[i:i + 1], loop_gen) for i in range(clean.shape[0])]
    assert torch.equal(torch.cat([p[0] for p in parts]), lq1)
    assert [p[1][0] for p in parts] == lab1
    for lab in lab1:
        assert set(lab) >= {"type", "level", "params", "class_index", "steps"}
        assert 0 <= lab["class_index"] < sampler.num_classes
        assert sampler.classes[lab["class_index"]] == lab["class_name"]


@pytest.mark.parametrize("spec", ["noise", "default-model", "unirestorer-in", "rain", "snow", "haze", "shake_blur"])
def test_different_seeds_differ(spec, clean):
    sampler = build_sampler(spec)
    a, _ = sampler(clean, g(1))
    b, _ = sampler(clean, g(2))
    assert not torch.equal(a, b)


def test_explicit_seeds_make_samples_independent_of_batch(clean):
    sampler = build_sampler("default-model")
    lq, labels = sampler(clean, seeds=[11, 22, 33, 44])
    alone, lab = sampler(clean[2:3], seeds=[33])
    assert torch.equal(alone[0], lq[2]) and lab[0] == labels[2]
    with pytest.raises(ValueError):
        sampler(clean)


def test_levels_fix_parameters(clean):
    _, lab = build_sampler("noise:25")(clean, g(0))
    assert all(l["params"] == {"sigma": 25.0} and l["level"] == "25" for l in lab)
    _, lab = build_sampler("blur:k15s2.0")(clean, g(0))
    assert lab[0]["params"] == {"kernel_size": 15.0, "sigma": 2.0}
    _, lab = build_sampler("jpeg:50")(clean, g(0))
    assert lab[0]["params"] == {"quality": 50.0}
    # a fixed level through the sampler equals the op called directly
    from anyrestore.degradations.jpeg import jpeg
    lq, _ = build_sampler("jpeg:50")(clean, g(0))
    assert torch.equal(lq, jpeg(clean, quality=50))


def test_mixture_order_is_canonical(clean):
    a = build_sampler("haze+rain")
    b = build_sampler("rain+haze")
    la, lab_a = a(clean, g(3))
    lb, lab_b = b(clean, g(3))
    assert torch.equal(la, lb)
    assert lab_a[0]["type"] == "rain+haze" and [s["type"] for s in lab_a[0]["steps"]] == ["rain", "haze"]


def test_ram_official_code_ranges():
    sampler = build_sampler("ram-official-code")
    assert sampler.classes == ("identity", "noise", "blur", "jpeg")
    counts = dict.fromkeys(sampler.classes, 0)
    x = torch.rand(64, 3, 16, 16, generator=g(0))
    lq, labels = sampler(x, g(0))
    for i, lab in enumerate(labels):
        counts[lab["class_name"]] += 1
        p = lab["params"]
        if lab["type"] == "noise":
            assert p["sigma"] == int(p["sigma"]) and 0 <= p["sigma"] <= 50
            assert torch.allclose(lq[i] * 255, (lq[i] * 255).round(), atol=1e-3)
        elif lab["type"] == "blur":
            assert p["kernel_size"] == 15 and any(abs(p["sigma"] - s / 10) < 1e-9 for s in range(20, 31))
        elif lab["type"] == "jpeg":
            assert p["quality"] == int(p["quality"]) and 10 <= p["quality"] <= 90
        else:
            assert torch.equal(lq[i], x[i])
    assert all(c > 5 for c in counts.values())


def test_ram_paper_has_no_identity():
    assert build_sampler("ram-paper").classes == ("noise", "blur", "jpeg")


def test_unirestorer_chain_order_gates_and_grid(clean):
    sampler = build_sampler("unirestorer-in")
    order = list(catalog.UNIRESTORER_ORDER)
    hits = dict.fromkeys(order, 0)
    n = 600
    for s in range(n):
        plan = sampler.plan(g(s))
        names = [st.name for st, _ in plan.steps]
        assert names == sorted(names, key=order.index) and names
        for name in names:
            hits[name] += 1
    assert hits["jpeg"] == 0
    p = 0.5 / (1 - 0.5**6)  # a gate is open given that not all six closed
    sd = math.sqrt(p * (1 - p) / n)
    for name in order[:-1]:
        assert abs(hits[name] / n - p) < 4 * sd
    lq, labels = sampler(clean, g(0))
    assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-3)  # quantised after every step
    ranges = catalog.UNIRESTORER["in"]
    for lab in labels:
        for st in lab["steps"]:
            for k, spec in ranges[st["type"]].items():
                if k in st["params"]:
                    lo, hi = catalog.spec_bounds(spec)
                    assert lo <= st["params"][k] <= hi


def test_unirestorer_out_ranges_and_combo():
    sampler = build_sampler("unirestorer-out:H-N-R")
    assert sampler.classes == ("H-N-R",)
    plan = sampler.plan(g(0))
    params = {st.name: p for st, p in plan.steps}
    assert [st.name for st, _ in plan.steps] == ["noise", "rain", "haze"]
    assert 50 <= params["noise"]["sigma"] <= 70 and 2.5 <= params["haze"]["beta"] <= 3.0
    assert 100 <= params["rain"]["count"] < 150


def test_unirestorer_single_degree_classes():
    sampler = build_sampler("unirestorer-single")
    assert "noise/medium" in sampler.classes and "haze/medium" not in sampler.classes
    for s in range(200):
        plan = sampler.plan(g(s))
        name = sampler.class_name(plan)
        step, p = plan.steps[0]
        if step.name == "noise":
            want = "light" if p["sigma"] < 20 else ("medium" if p["sigma"] < 35 else "heavy")
            assert name == f"noise/{want}"
        if step.name == "jpeg":
            want = "light" if p["quality"] >= 25 else ("medium" if p["quality"] >= 15 else "heavy")
            assert name == f"jpeg/{want}"


def test_maskdcpt_presets():
    s12 = build_sampler("maskdcpt-12d")
    assert s12.classes == tuple(catalog.MASKDCPT_TASKS["12d"]) and s12.num_classes == 12
    seen = {s12.class_name(s12.plan(g(i))) for i in range(300)}
    assert "moire" not in seen and len(seen) == 11
    assert build_sampler("maskdcpt-5d").num_classes == 5


@pytest.mark.parametrize("preset,weights", [("default-model", DEFAULT_MODEL_WEIGHTS),
                                            ("default-model-balanced", DEFAULT_MODEL_BALANCED_WEIGHTS),
                                            ("default-model-noise-blur", DEFAULT_MODEL_NOISE_BLUR_WEIGHTS)])
def test_default_model_weights_and_frequencies(preset, weights):
    sampler = build_sampler(preset)
    assert abs(sum(weights.values()) - 100) < 1e-9
    total = sum(weights.values())
    assert sampler.classes == tuple(weights)
    n = 3000
    counts = dict.fromkeys(sampler.classes, 0)
    types = set()
    for s in range(n):
        plan = sampler.plan(g(s))
        counts[sampler.class_name(plan)] += 1
        types.update(st.name for st, _ in plan.steps)
    for name, w in weights.items():
        p = w / total
        assert abs(counts[name] / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-9
    assert {"noise", "poisson", "camera_noise", "aniso_blur", "shake_blur", "defocus_blur", "jpeg", "haze", "rain",
            "snow", "low_light", "identity"} <= types


def test_every_catalog_type_has_levels_within_limits():
    for name in list_types():
        t = catalog.get_type(name)
        for level, params in t.levels.items():
            for k, v in params.items():
                catalog.check_value(t, k, v)
            build_sampler(f"{name}:{level}")


@pytest.mark.parametrize("spec,match", [
    ("fog", "unknown degradation type"),
    ("noise:loud", "unknown level"),
    ({"type": "noise", "sigma": 300}, "out of range"),
    ({"type": "jpeg", "quality": 50.5}, "integer"),
    ({"type": "noise", "strength": 3}, "no parameter"),
    ({"type": "noise", "quantize": "ceil"}, "quantize"),
    ({"type": "blur", "kernel_size": 14}, "odd"),
    ("unirestorer-in:H-X", "unknown UniRestorer combination"),
    ("ram-paper:high", "takes no ':' argument"),
    ({"chain": ["noise"], "gates": [0.0]}, "never degrade"),
    ({"nothing": 1}, "needs .type."),
    ({"preset": "ram-paper", "x": 1}, "takes no other keys"),
])
def test_spec_errors_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_sampler(spec)
    assert isinstance(info.value, AnyRestoreError) and "\n" not in str(info.value)


def test_dict_specs():
    s = build_sampler({"mixture": [{"spec": "noise:10", "weight": 3}, {"spec": "jpeg:30", "name": "car"}]})
    assert s.classes == ("noise", "car")
    c = build_sampler({"chain": ["blur:low", "noise:low"], "gates": [1.0, 0.5]})
    assert set(c.classes) == {"blur", "blur+noise"}


def test_ram_paper_ranges():
    sampler = build_sampler("ram-paper")
    x = torch.rand(96, 3, 16, 16, generator=g(1))
    lq, labels = sampler(x, g(1))
    seen = set()
    for i, lab in enumerate(labels):
        p = lab["params"]
        seen.add(lab["type"])
        if lab["type"] == "noise":  # ram.md D5 paper: σ ∈ (0, 50], continuous, uint8 truncation kept
            assert 0 <= p["sigma"] <= 50
            assert torch.allclose(lq[i] * 255, (lq[i] * 255).round(), atol=1e-3)
        elif lab["type"] == "blur":  # σ ∈ [0.1, 3.1], 15×15 kernel
            assert p["kernel_size"] == 15 and 0.1 <= p["sigma"] <= 3.1
        else:  # q ∈ [20, 90], integer
            assert lab["type"] == "jpeg" and p["quality"] == int(p["quality"]) and 20 <= p["quality"] <= 90
    assert seen == {"noise", "blur", "jpeg"}
    sigmas = [lab["params"]["sigma"] for lab in labels if lab["type"] == "noise"]
    assert any(s != int(s) for s in sigmas)  # continuous, unlike the official-code integers


def test_ram_test_presets_match_the_opencv_protocol():
    import cv2
    import numpy as np

    x = torch.rand(2, 3, 40, 36, generator=g(2))
    blurred, labels = build_sampler("ram-test-blur")(x, g(0))
    assert labels[0]["params"] == {"kernel_size": 15, "sigma": 2.0} and labels[0]["level"] == "k15s2.0"
    for i in range(2):  # ram.md §7.1: 15×15 Gaussian σ 2.0, reflect-101 borders, no quantisation
        ref = cv2.GaussianBlur(x[i].permute(1, 2, 0).numpy() * 255, (15, 15), 2.0, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(blurred[i].permute(1, 2, 0).numpy() * 255 - ref).max() < 1e-3
    assert not torch.allclose(blurred * 255, (blurred * 255).round(), atol=1e-3)
    coded, labels = build_sampler("ram-test-jpeg")(x, g(0))
    assert labels[0]["params"] == {"quality": 50} and labels[0]["level"] == "50"
    for i in range(2):  # round to uint8, OpenCV encode/decode at q 50
        rgb = np.round(x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        _, buf = cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 50])
        ref = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
        assert np.abs(coded[i].permute(1, 2, 0).numpy() * 255 - ref).max() <= 1 + 1e-3


def test_snow_preset_adds_heavy_opaque_snow_to_the_noise_blur_mixture():
    sampler = build_sampler("default-model-snow")
    weights = {name: w for name, _, w in sampler.components}
    assert weights == {**DEFAULT_MODEL_NOISE_BLUR_WEIGHTS, "heavy_snow": 8}
    heavy = next(s for name, s, _ in sampler.components if name == "heavy_snow")
    draws = [heavy.plan(g(seed)).steps[0] for seed in range(200)]
    assert {step.name for step, _ in draws} == {"snow"}
    density = torch.tensor([float(p["density"]) for _, p in draws])
    hardness = torch.tensor([float(p["hardness"]) for _, p in draws])
    assert density.min() >= 10 and density.max() <= 60 and density.max() > 50
    assert hardness.min() >= 0 and hardness.max() <= 1 and hardness.min() < 0.1 and hardness.max() > 0.9
    soft = next(s for name, s, _ in sampler.components if name == "snow")
    assert all(float(soft.plan(g(seed)).steps[0][1]["hardness"]) == 0 for seed in range(20))
