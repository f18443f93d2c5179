"""The shipped default model: strict loading, metadata, a fast quality smoke test, the README's main command."""
import json

import torch
from safetensors import safe_open

import anyrestore.cli as cli
from anyrestore.api import WEIGHTS_DIR, default_model_spec, load_model
from anyrestore.archs.registry import get_preset
from anyrestore.checkpoints import load_model as load_checkpoint
from anyrestore.io import read_image
from anyrestore.metrics import psnr

WEIGHTS = WEIGHTS_DIR / "nafnet-default.safetensors"
SAMPLES = WEIGHTS_DIR.parent / "samples"


def test_shipped_weights_load_strictly_and_match_their_preset():
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size <= 32 * 2**20
    with safe_open(str(WEIGHTS), "pt") as f:
        meta = f.metadata()
    preset = get_preset("nafnet-default")
    assert meta["preset"] == "nafnet-default" and meta["arch"] == preset.arch
    assert json.loads(meta["arch_kwargs"]) == json.loads(json.dumps(dict(preset.kwargs)))
    model = load_checkpoint(WEIGHTS, strict=True)
    assert model.meta == preset.meta
    assert model.meta.input_levels == 255  # trained on 8-bit images: the Predictor rounds float inputs
    # U-Net 4,445,163 + colour-noise gate 529 + motion head 1,412 + Gaussian deconvolution head 5,123 + two exposure
    # curves of 7,705 (crops, whole photos) + the JPEG expert's shallow layers 1,297,899 (under the 8 M budget)
    assert sum(p.numel() for p in model.parameters()) == 5_765_536
    assert model.jpeg_expert is not None and model.jpeg_projection is not None
    assert model.sharpen is not None and model.tone_curve is not None and model.motion_deblur is not None
    assert model.photo_tone_curve is not None
    assert model.chroma_denoise is not None
    assert model.sharpen.mode == "wiener"
    assert default_model_spec() == "nafnet-default"


def test_default_model_denoises_the_bundled_sample_by_4db():
    clean = read_image(SAMPLES / "chelsea.png")
    noisy = read_image(SAMPLES / "chelsea_noise25.png")  # sigma 25, see samples.json
    model = load_model()
    from anyrestore.inference.predictor import Predictor

    with torch.inference_mode():
        restored = Predictor(model, device="cpu")(noisy[None])[0]
    assert psnr(restored, clean) - psnr(noisy, clean) >= 4.0


def test_default_model_removes_heavy_opaque_snow():
    """Stage 17 (twenty-first release): snow that covers about a fifth of the frame with opaque flakes. The twentieth
    release gained 3.2 dB here (it had seen snow covering at most 6 % with soft flakes); the twenty-first 11.1."""
    from anyrestore.degradations import weather
    from anyrestore.inference.predictor import Predictor

    clean = read_image(SAMPLES / "chelsea.png")
    snowy = weather.snow(clean[None], density=40, radius=3, layers=2, hardness=1.0,
                         generator=torch.Generator().manual_seed(0))[0]
    snowy = torch.round(snowy * 255) / 255
    with torch.inference_mode():
        restored = Predictor(load_model(), device="cpu")(snowy[None])[0]
    assert psnr(restored, clean) - psnr(snowy, clean) >= 8.0


def test_default_model_brightens_an_under_exposed_photo_and_leaves_a_clean_one():
    """The exposure curve: the bundled sample under-exposed (Retinex darkening γ 2.2 × 0.8, the quality report's
    low light; mean 0.20; the fourteenth release's curve: 11.6 -> 24.1 dB, the thirteenth's only 13.4) gains ≥ 6 dB;
    on the clean photo the whole model stays within 0.5 dB of the U-Net alone."""
    from anyrestore.degradations.light import low_light
    from anyrestore.inference.predictor import Predictor

    clean = read_image(SAMPLES / "chelsea.png")
    dark = (low_light(clean[None], gamma=2.2, scale=0.8)[0] * 255).round() / 255
    model = load_model()
    with torch.inference_mode():
        brightened = Predictor(model, device="cpu")(dark)
        on_clean = Predictor(model, device="cpu")(clean)
        u_net_only = Predictor(model, device="cpu", global_stage=False)(clean)
    assert psnr(brightened, clean) - psnr(dark, clean) >= 6.0
    assert abs(psnr(on_clean, clean) - psnr(u_net_only, clean)) <= 0.5


def test_default_model_brightens_an_under_exposed_whole_photo_with_its_photo_head():
    """The second exposure curve (sixteenth release; seventeenth: trained with fewer dark windows): the bundled sample
    upscaled to a whole-photo size (660×992, shorter side ≥ photo_min_side) and under-exposed like the quality
    report's low light is brightened through the photo head (measured: 11.65 -> 24.48 dB; sixteenth 22.51), and that
    head keeps the clean upscaled photo within 40 dB of itself (measured 48.5; sixteenth 42.3)."""
    import torch.nn.functional as F

    from anyrestore.degradations.light import low_light

    clean = read_image(SAMPLES / "chelsea.png")[:3]
    photo = (F.interpolate(clean[None], size=(660, 992), mode="bicubic", align_corners=False).clamp(0, 1)
             * 255).round() / 255
    dark = (low_light(photo, gamma=2.2, scale=0.8) * 255).round() / 255
    model = load_model()
    router = model.global_stage.stages[-1]  # the model's own threshold (its arch_kwargs' photo_min_side, 640)
    assert router.is_whole_photo(660, 992) and not router.is_whole_photo(639, 639)
    assert router.is_whole_photo(512, 768)  # a Kodak-size frame is a whole photo too
    with torch.inference_mode():
        brightened = model.global_stage(dark, dark)
        by_photo_head = model.photo_tone_curve(dark, dark)
        kept = model.photo_tone_curve(photo, photo)
    assert psnr(brightened, photo) - psnr(dark, photo) >= 9.0
    assert abs(psnr(brightened, photo) - psnr(by_photo_head, photo)) < 0.1  # the other stages leave it alone
    assert psnr(kept, photo) >= 40.0


def test_default_model_gives_an_under_exposed_kodak_size_frame_the_photo_curve_and_a_square_crop_the_crop_curve():
    """Session 31: a non-square frame under 640 px (Kodak's 512×768) counts as a whole photo, and the photo curve is
    blended in by how much it brightens (here 2.3×, fully). The sample upscaled and darkened like the report's low
    light: measured 11.65 -> 24.69 dB through the photo curve, 24.09 through the crop curve; the same at 512×512 (a
    square crop) keeps the crop curve (23.93, photo curve 24.60); the clean frame stays within 60 dB of itself (71.7)."""
    import torch.nn.functional as F

    from anyrestore.degradations.light import low_light

    clean = read_image(SAMPLES / "chelsea.png")[:3]
    model = load_model()
    for size, head in (((512, 768), model.photo_tone_curve), ((512, 512), model.tone_curve)):
        photo = (F.interpolate(clean[None], size=size, mode="bicubic", align_corners=False).clamp(0, 1)
                 * 255).round() / 255
        dark = (low_light(photo, gamma=2.2, scale=0.8) * 255).round() / 255
        other = model.tone_curve if head is model.photo_tone_curve else model.photo_tone_curve
        with torch.inference_mode():
            out, by_head, by_other = model.global_stage(dark, dark), head(dark, dark), other(dark, dark)
            kept = model.global_stage(photo, photo)
        assert psnr(out, photo) - psnr(dark, photo) >= 12.0, size
        assert abs(psnr(out, photo) - psnr(by_head, photo)) < 0.05, size
        assert abs(psnr(by_other, photo) - psnr(by_head, photo)) > 0.4, size  # the test can tell the curves apart
        assert psnr(kept, photo) >= 60.0, size


def test_default_model_deblurs_a_linear_motion_blur_and_leaves_the_clean_photo():
    """The motion stage: the held-out sample with a 13-pixel line blur at 60° (our library's kernel) gains ≥ 2 dB over
    the U-Net alone; on the clean photo the stage keeps its deconvolutions out (no pixel moves by 2/255)."""
    from anyrestore.degradations.blur import motion_blur
    from anyrestore.inference.predictor import Predictor

    clean = read_image(SAMPLES / "chelsea.png")[:3]
    blurred = (motion_blur(clean[None], length=13, angle=60)[0] * 255).round() / 255
    model = load_model()
    with torch.inference_mode():
        whole = Predictor(model, device="cpu")(blurred)
        u_net = Predictor(model, device="cpu", global_stage=False)(blurred)
        stages = model.motion_deblur(clean[None], clean[None])
    assert psnr(whole, clean) - psnr(u_net, clean) >= 2.0
    assert (stages - clean[None]).abs().max() < 2 / 255


def test_default_model_sends_a_jpeg_to_its_expert_which_beats_the_unet():
    """The JPEG expert (eighteenth release): the sample saved at quality 30 is routed to it, and the restore gains
    over the same stages run on the base U-Net's output (33.05 against 32.88 dB when measured; input 32.31)."""
    from anyrestore.degradations.jpeg import jpeg
    from anyrestore.inference.predictor import Predictor

    clean = read_image(SAMPLES / "chelsea.png")[:3]
    compressed = jpeg(clean[None], quality=30)[0]
    model = load_model()
    predictor = Predictor(model, device="cpu")
    with torch.inference_mode():
        restored = predictor(compressed)
        base = model.global_stage(compressed[None], model.forward_local(compressed[None]))[0]
    assert predictor.last_run["expert"] == [True]
    assert psnr(restored, clean) - psnr(compressed, clean) >= 0.6
    assert psnr(restored, clean) - psnr(base, clean) >= 0.1
    noisy = read_image(SAMPLES / "chelsea_noise25.png")
    predictor(noisy)
    assert predictor.last_run["expert"] == [False]  # no JPEG table: the U-Net restores it


def test_readme_main_command_writes_a_restored_file(tmp_path, capsys):
    code = cli.main(["restore", "--sample", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    result = tmp_path / "out" / "chelsea_noise25.png"
    assert code == 0 and result.is_file() and str(result) in out
    assert "nafnet-default" in out  # the summary names the model that was used


def test_models_command_marks_the_trained_default(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["nafnet-default"]["restore_default"] and rows["nafnet-default"]["bundled_weights"]
    assert not rows["classical"]["restore_default"]


def test_default_recipes_chain_and_the_cpu_stages_keep_dark_scenes_dark():
    import re
    from pathlib import Path

    from anyrestore.degradations import build_sampler
    from anyrestore.engine.config import load_config

    repo = Path(__file__).resolve().parents[1]
    root = repo / "configs" / "default"
    names = ("pretrain", "finetune", "full", "long", "full_balanced")
    configs = {name: load_config(root / f"{name}.yaml") for name in names}
    assert {c.model.name for c in configs.values()} == {"nafnet-default"}
    assert configs["pretrain"].objective["type"] == "ram_pretrain"
    assert configs["finetune"].objective["ratio"] == 0.3
    assert configs["full"].objective["ratio"] == configs["long"].objective["ratio"] == 1.0
    last = configs["full_balanced"]
    assert last.objective["type"] == "psnr" and last.train.channels_last and last.train.iterations == 8000
    streams = {s.name: s for s in last.data.streams}
    assert set(streams) == {"wallpapers", "shipped", "dead_leaves", "dark_photos_mild", "dark_jpeg"}
    assert streams["dark_photos_mild"].source["path"] == "data_cache/dark_photos_mild"
    assert streams["dark_jpeg"].source["path"] == "data_cache/dark_photos"
    # the dark JPEG scenes never meet a brightness-changing degradation: only JPEG, noise and blur steps
    dark_jpeg = build_sampler(streams["dark_jpeg"].degradation)
    gen = torch.Generator()
    kinds = set()
    for seed in range(200):
        gen.manual_seed(seed)
        kinds.update(step.name for step, _ in dark_jpeg.plan(gen).steps)
    assert "jpeg" in kinds and kinds <= {"jpeg", "noise", "blur"}
    assert {s.name for s in configs["long"].data.streams} == {"wallpapers", "shipped", "dead_leaves"}
    # stage 7 (GPU) is stage 6 with a GPU's batch, crop and iterations: same data, same loss
    polish = load_config(root / "gpu_polish.yaml")
    assert polish.objective == last.objective and polish.train.channels_last
    assert (polish.data.batch_size, polish.data.crop, polish.train.iterations) == (32, 128, 12800)
    assert [(s.name, s.weight, s.source, s.degradation) for s in polish.data.streams] == \
        [(s.name, s.weight, s.source, s.degradation) for s in last.data.streams]
    # the script chains exactly these recipes, in this order, each from the previous stage's weights
    script = (repo / "scripts" / "train_default.sh").read_text()
    assert re.findall(r"^\s*train configs/default/(\w+)\.yaml", script, re.M) == [*names, "gpu_polish",
                                                                                 "snow_polish"]
    # stage 17 (heavy snow): stage 6's streams and loss, heavy snow in every photo stream, and only the layers the
    # JPEG expert has its own copy of train
    snow = load_config(root / "snow_polish.yaml")
    assert snow.objective["type"] == "psnr" and snow.model.strict is False
    assert snow.objective["train_only"] == ["intro", "encoders.0", "encoders.1", "encoders.2", "downs", "ups",
                                            "decoders", "ending"]
    assert [(s.name, s.weight, s.source) for s in snow.data.streams] == \
        [(s.name, s.weight, s.source) for s in last.data.streams]
    assert [s.degradation for s in snow.data.streams][:4] == ["default-model-snow"] * 4
    assert snow.data.streams[4].degradation == last.data.streams[4].degradation


def test_dark_photo_script_darkens_reproducibly(tmp_path):
    import importlib.util
    from pathlib import Path

    from anyrestore.io import write_image

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_dark_photos.py"
    spec = importlib.util.spec_from_file_location("make_dark_photos", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    photos = tmp_path / "photos"
    photos.mkdir()
    clean = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.4
    write_image(photos / "a.png", clean)
    for out in ("x", "y"):
        assert module.main([str(photos), "-o", str(tmp_path / out), "--copies", "2"]) == 0
    darks = sorted((tmp_path / "x").glob("*.png"))
    assert [p.name for p in darks] == ["a_dark0.png", "a_dark1.png"]
    for p in darks:
        dark = read_image(p)
        assert torch.equal(dark, read_image(tmp_path / "y" / p.name))  # seeded
        assert dark.mean() < 0.8 * clean.mean() and (dark <= clean + 1 / 255).all()


def test_training_script_chains_the_stages_and_passes_overrides_to_every_stage(tmp_path):
    """Runs scripts/train_default.sh with stand-ins for `anyrestore` and the data scripts that record their
    arguments: the stages run in order, each from the previous stage's weights, with TRAIN_OVERRIDES appended."""
    import os
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    bin_dir, runs, log = tmp_path / "bin", tmp_path / "runs", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "anyrestore").write_text(f"""#!/usr/bin/env bash
echo "anyrestore $*" >> {shlex.quote(str(log))}
if [ "$1" = train ]; then
  while [ $# -gt 0 ]; do [ "$1" = --run-dir ] && dir=$2; shift; done
  mkdir -p "$dir/ckpt" && echo '{{"weights": "iter_9.safetensors"}}' > "$dir/ckpt/latest.json"
  touch "$dir/model.safetensors" "$dir/done.txt"
elif [ "$1" = mac ]; then
  while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
  mkdir -p "$out" && touch "$out/ranking.json"
fi
""")
    # `python -c` (the script's checkpoint lookup) runs for real; data and report scripts are only recorded
    (bin_dir / "python").write_text(f"""#!/usr/bin/env bash
if [ "$1" = -c ]; then exec {shlex.quote(sys.executable)} "$@"; fi
echo "python $*" >> {shlex.quote(str(log))}
""")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUNS": str(runs),
           "TRAIN_OVERRIDES": "data.batch_size=32 data.crop=128", "LONG_ITERS": "77", "STAGE7": "1"}
    done = subprocess.run(["bash", str(repo / "scripts" / "train_default.sh")], env=env, check=True,
                          capture_output=True, text=True)
    assert done.stdout.strip().endswith(f"{runs}/default-whole-image/model.safetensors (copy to "
                                        "anyrestore/weights/nafnet-default.safetensors).")
    trains = [line.split() for line in log.read_text().splitlines() if line.startswith("anyrestore train")]
    assert [t[2] for t in trains] == [f"configs/default/{n}.yaml" for n in
                                      ("pretrain", "finetune", "full", "long", "full_balanced", "gpu_polish",
                                       "snow_polish")]
    for call in trains:
        run_dir = call.index("--run-dir")
        assert call[run_dir - 2:run_dir] == ["data.batch_size=32", "data.crop=128"]
    stages = [t[t.index("--run-dir") + 1] for t in trains]
    pretrained = [next((a for a in t if a.startswith("model.pretrained=")), None) for t in trains]
    assert pretrained[0] is None
    assert pretrained[1] == f"model.pretrained={stages[0]}/ckpt/iter_9.safetensors"   # latest checkpoint
    for prev, arg in zip(stages[1:-2], pretrained[2:-1]):
        assert arg == f"model.pretrained={prev}/model.safetensors"
    assert "train.iterations=77" in trains[3]
    assert any(line.startswith("anyrestore mac") for line in log.read_text().splitlines())
    # stages 8-15: the exposure curve on the last U-Net (stage 7's here), the Gaussian deconvolution on that, the
    # motion deblurring on that, the colour-noise smoothing on that, the coarse pass switched on in that, a new
    # exposure curve in place of stage 8's, the JPEG projection switched on in that, and the whole-photo
    # exposure curve on that
    whole = [line.split() for line in log.read_text().splitlines() if "scripts/train_global_stage.py" in line]
    assert [call[2] for call in whole] == ["tone_curve", "sharpen", "motion_deblur", "chroma_denoise", "coarse_pass",
                                         "tone_curve", "jpeg_projection", "photo_tone_curve"]
    assert whole[0][whole[0].index("--weights") + 1] == f"{stages[-2]}/model.safetensors"
    assert whole[0][whole[0].index("-o") + 1] == f"{runs}/default-tone-curve/model.safetensors"
    assert whole[1][whole[1].index("--weights") + 1] == f"{runs}/default-tone-curve/model.safetensors"
    assert whole[1][whole[1].index("-o") + 1] == f"{runs}/default-sharpen/model.safetensors"
    assert whole[2][whole[2].index("--weights") + 1] == f"{runs}/default-sharpen/model.safetensors"
    assert whole[2][whole[2].index("-o") + 1] == f"{runs}/default-motion-deblur/model.safetensors"
    assert whole[3][whole[3].index("--weights") + 1] == f"{runs}/default-motion-deblur/model.safetensors"
    assert whole[3][whole[3].index("-o") + 1] == f"{runs}/default-chroma-denoise/model.safetensors"
    assert whole[4][whole[4].index("--weights") + 1] == f"{runs}/default-chroma-denoise/model.safetensors"
    assert whole[4][whole[4].index("-o") + 1] == f"{runs}/default-coarse-pass/model.safetensors"
    assert whole[5][whole[5].index("--weights") + 1] == f"{runs}/default-coarse-pass/model.safetensors"
    assert whole[5][whole[5].index("-o") + 1] == f"{runs}/default-exposure/model.safetensors"
    assert "--replace" in whole[5] and whole[5][whole[5].index("--scene-scale") + 1:][:2] == ["0.92", "1.0"]
    assert whole[5][whole[5].index("--run") + 1] == "default-exposure"
    assert whole[6][whole[6].index("--weights") + 1] == f"{runs}/default-exposure/model.safetensors"
    assert whole[6][whole[6].index("-o") + 1] == f"{runs}/default-jpeg-projection/model.safetensors"
    assert whole[6][whole[6].index("--release") + 1] == "15"
    assert whole[7][whole[7].index("--weights") + 1] == f"{runs}/default-jpeg-projection/model.safetensors"
    assert whole[7][whole[7].index("-o") + 1] == f"{runs}/default-photo-exposure/model.safetensors"
    assert whole[7][whole[7].index("--dark-window-share") + 1] == "0.05"
    assert whole[7][whole[7].index("--release") + 1] == "17"
    # stage 16: the JPEG expert fine-tuned on that
    expert = [line.split() for line in log.read_text().splitlines() if "scripts/train_jpeg_expert.py" in line]
    assert len(expert) == 1 and "--resume" not in expert[0]
    assert expert[0][expert[0].index("--weights") + 1] == f"{runs}/default-photo-exposure/model.safetensors"
    assert expert[0][expert[0].index("-o") + 1] == f"{runs}/default-jpeg-expert/model.safetensors"
    assert expert[0][expert[0].index("--release") + 1] == "20"
    # stage 17: the U-Net's heavy-snow fine-tune starts from the expert's file, and its layers go back into it
    assert pretrained[-1] == f"model.pretrained={runs}/default-jpeg-expert/model.safetensors"
    splice = [line.split() for line in log.read_text().splitlines() if "scripts/splice_unet.py" in line]
    assert len(splice) == 1
    assert splice[0][splice[0].index("--weights") + 1] == f"{runs}/default-jpeg-expert/model.safetensors"
    assert splice[0][splice[0].index("--unet") + 1] == f"{stages[-1]}/model.safetensors"
    assert splice[0][splice[0].index("-o") + 1] == f"{runs}/default-snow/model.safetensors"
    assert splice[0][splice[0].index("--release") + 1] == "21"
    # stage 18: metadata only, the preset's whole_image_pixels written into that file
    option = [line.split() for line in log.read_text().splitlines() if "scripts/set_arch_option.py" in line]
    assert len(option) == 1
    assert option[0][option[0].index("--weights") + 1] == f"{runs}/default-snow/model.safetensors"
    assert option[0][option[0].index("-o") + 1] == f"{runs}/default-whole-image/model.safetensors"
    pixels = get_preset("nafnet-default").kwargs["whole_image_pixels"]
    assert option[0][option[0].index("--option") + 1] == f"whole_image_pixels={pixels}"
    assert option[0][option[0].index("--release") + 1] == "22"  # the shipped file's metadata 'release'
    reports = [line for line in log.read_text().splitlines() if "benchmarks/default_model.py" in line]
    assert len(reports) == 16

    # STAGE7=0 (or no CUDA device under the default `auto`) ends at stage 6 and names its weights
    log.unlink()
    done = subprocess.run(["bash", str(repo / "scripts" / "train_default.sh")], check=True, capture_output=True,
                          text=True, env={**env, "STAGE7": "0", "RUNS": str(tmp_path / "runs_cpu")})
    assert "Stage 7 (configs/default/gpu_polish.yaml) skipped" in done.stdout
    assert done.stdout.strip().endswith("/default-whole-image/model.safetensors (copy to "
                                        "anyrestore/weights/nafnet-default.safetensors).")
    trains = [line.split() for line in log.read_text().splitlines() if line.startswith("anyrestore train")]
    assert [t[2] for t in trains[-2:]] == ["configs/default/full_balanced.yaml", "configs/default/snow_polish.yaml"]
    tone = next(line.split() for line in log.read_text().splitlines() if "train_global_stage.py tone_curve" in line)
    assert tone[tone.index("--weights") + 1].endswith("/default-full-balanced/model.safetensors")
    assert sum("benchmarks/default_model.py" in line for line in log.read_text().splitlines()) == 15
    # an interrupted expert run leaves its checkpoint, and a re-run resumes it
    log.unlink()
    (tmp_path / "runs_cpu" / "default-jpeg-expert").mkdir()
    (tmp_path / "runs_cpu" / "default-jpeg-expert" / "model.resume.pt").touch()
    subprocess.run(["bash", str(repo / "scripts" / "train_default.sh")], check=True, capture_output=True,
                   text=True, env={**env, "STAGE7": "0", "RUNS": str(tmp_path / "runs_cpu")})
    expert = [line.split() for line in log.read_text().splitlines() if "scripts/train_jpeg_expert.py" in line]
    assert len(expert) == 1 and expert[0][-1] == "--resume"
    bad = subprocess.run(["bash", str(repo / "scripts" / "train_default.sh")], capture_output=True, text=True,
                         env={**env, "STAGE7": "yes", "RUNS": str(tmp_path / "runs_bad")})
    assert bad.returncode == 2 and "STAGE7 must be auto, 0 or 1, got 'yes'" in bad.stderr
    assert not (tmp_path / "runs_bad").exists()


def test_every_launchable_recipe_loads_and_names_itself_in_its_launch_line():
    """Recipes open with their launch command (`# … anyrestore train <path> …`); base includes say they are not
    launched. Every recipe must validate, and its first line must name its own path."""
    from pathlib import Path

    from anyrestore.engine.config import load_config

    repo = Path(__file__).resolve().parents[1]
    recipes = []
    for path in sorted((repo / "configs").rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        if "not launched on its own" in first:
            continue
        rel = path.relative_to(repo).as_posix()
        assert "anyrestore train" in first and f" {rel}" in first, (rel, first)
        assert load_config(path).name, rel
        recipes.append(rel)
    assert {"configs/default/gpu_polish.yaml", "configs/default/gpu_lowlight.yaml"} <= set(recipes)


def test_unet_recipes_build_the_unet_without_whole_image_stages():
    """Stages 1-7 train the U-Net alone. A whole-image stage already in their weights would stop
    scripts/train_global_stage.py from adding it later (stage 10 once failed this way: the preset turns the motion
    stage on, and the recipes did not turn it off)."""
    from pathlib import Path

    from anyrestore.archs.registry import build_model
    from anyrestore.engine.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs" / "default"
    recipes = [p for p in sorted(root.glob("*.yaml")) if "not launched on its own" not in p.read_text()]
    assert len(recipes) >= 7
    for path in recipes:
        cfg = load_config(path)
        model = build_model(cfg.model.name, **cfg.model.kwargs)
        assert model.global_stage is None, path.name
        stage_prefixes = ("chroma_denoise.", "motion_deblur.", "sharpen.", "tone_curve.", "photo_tone_curve.",
                          "jpeg_expert.")
        assert not [k for k in model.state_dict() if k.startswith(stage_prefixes)]


def test_splice_puts_a_fine_tuned_unet_into_the_full_model_and_leaves_the_rest_byte_for_byte(tmp_path, capsys):
    import pytest

    from _cli_testutil import load_script, randomize_parameters
    from anyrestore.archs import build_model
    from anyrestore.checkpoints import save_model

    script = load_script("scripts/splice_unet.py")
    full = randomize_parameters(build_model("nafnet-tiny", jpeg_projection=True, jpeg_expert=True), seed=0, scale=0.05)
    save_model(full, tmp_path / "full.safetensors", release="20")
    unet = build_model("nafnet-tiny")
    unet.load_state_dict(full.state_dict(), strict=False)
    with torch.no_grad():
        unet.decoders[0][0].conv1.weight.add_(0.5)
    save_model(unet, tmp_path / "unet.safetensors", weights="ema")
    out = tmp_path / "spliced.safetensors"
    args = ["--weights", str(tmp_path / "full.safetensors"), "--unet", str(tmp_path / "unet.safetensors")]
    assert script.main([*args, "-o", str(out), "--release", "21"]) == 0
    n_unet = len(unet.state_dict())
    assert f"1 of {n_unet} U-Net tensors changed: decoders (1)" in capsys.readouterr().out
    spliced = load_checkpoint(out)
    for key, value in spliced.state_dict().items():
        source = unet if key == "decoders.0.0.conv1.weight" else full
        assert torch.equal(value, source.state_dict()[key]), key
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert (meta["release"], meta["stage"], meta["unet_weights"]) == ("21", "unet_splice", "unet.safetensors")
    assert json.loads(meta["arch_kwargs"])["jpeg_expert"] is True
    # a change in the layers the expert shares is named
    with torch.no_grad():
        unet.middle_blks[0].conv1.weight.add_(0.5)
    save_model(unet, tmp_path / "unet.safetensors", weights="ema")
    assert script.main([*args, "-o", str(out)]) == 0
    assert "note: middle_blks changed, which the JPEG expert shares" in capsys.readouterr().out
    # a U-Net of another shape is refused in one line, and nothing is written
    other = build_model("nafnet-tiny", width=12)
    save_model(other, tmp_path / "other.safetensors")
    with pytest.raises(SystemExit, match="splice_unet: shape of .* differs"):
        script.main(["--weights", str(tmp_path / "full.safetensors"), "--unet", str(tmp_path / "other.safetensors"),
                     "-o", str(tmp_path / "no.safetensors")])
    assert not (tmp_path / "no.safetensors").exists()


def test_set_arch_option_revises_the_metadata_and_keeps_every_tensor(tmp_path, capsys):
    import pytest

    from _cli_testutil import load_script, randomize_parameters
    from anyrestore.archs import build_model
    from anyrestore.checkpoints import file_sha256, save_model

    script = load_script("scripts/set_arch_option.py")
    model = randomize_parameters(build_model("nafnet-tiny", jpeg_projection=True), seed=0, scale=0.05)
    source = tmp_path / "model.safetensors"
    save_model(model, source, release="21", run="some-run")
    out = tmp_path / "revised.safetensors"
    assert script.main(["--weights", str(source), "-o", str(out), "--option", "whole_image_pixels=65536",
                        "--release", "22"]) == 0
    assert "whole_image_pixels=65536, tensors unchanged" in capsys.readouterr().out
    revised = load_checkpoint(out, strict=True)
    assert revised.whole_image_pixels == 65536 and revised.jpeg_projection is not None
    for key, value in model.state_dict().items():
        assert torch.equal(revised.state_dict()[key], value), key
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert (meta["release"], meta["run"], meta["revised_from_sha256"]) == ("22", "some-run", file_sha256(source))
    assert json.loads(meta["arch_kwargs"])["whole_image_pixels"] == 65536
    # an option the architecture refuses, or a value that is not JSON, is one line and writes nothing
    bad = tmp_path / "bad.safetensors"
    with pytest.raises(SystemExit, match="set_arch_option: nafnet does not take whole_image_pixels=10"):
        script.main(["--weights", str(source), "-o", str(bad), "--option", "whole_image_pixels=10"])
    with pytest.raises(SystemExit, match="is not JSON"):
        script.main(["--weights", str(source), "-o", str(bad), "--option", "whole_image_pixels=4M"])
    assert not bad.exists()
