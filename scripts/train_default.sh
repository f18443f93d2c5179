#!/usr/bin/env bash
# Reproduces anyrestore/weights/nafnet-default.safetensors (the default model) from scratch, offline, with the RAM pipeline:
#   0. data: Debian wallpaper photographs (apt-get download + dpkg-deb -x), 600 seeded dead-leaves images and
#      seeded darkened copies of the training photos (clean targets of genuinely dark scenes)
#   1. mask pre-training      configs/default/pretrain.yaml       (RAM stage 1)
#   2. MAC layer ranking      anyrestore mac                       (RAM stage 2)
#   3. selective fine-tuning  configs/default/finetune.yaml       (RAM stage 3, top 30 % of layers)
#   4. short full fine-tune   configs/default/full.yaml           (every layer, L1; measurably better than 3)
#   5. long full fine-tune    configs/default/long.yaml           (cosine warm restart, L1: learns haze, rain, snow)
#   6. balanced fine-tune     configs/default/full_balanced.yaml  (PSNR loss, noise/blur-heavy mixture, dark scenes)
#   7. GPU polish             configs/default/gpu_polish.yaml     (stage 6's data, batch 32 x 128², 12,800 iterations)
#   8. exposure curve         scripts/train_global_stage.py tone_curve  (whole-image tone curve, frozen U-Net, ~8 min)
#   9. Gaussian deconvolution scripts/train_global_stage.py sharpen     (whole-image Wiener deblurring, ~15 min)
#  10. motion deblurring      scripts/train_global_stage.py motion_deblur (linear blur from the cepstrum, ~55 min)
#  11. colour-noise smoothing scripts/train_global_stage.py chroma_denoise (luma-guided chroma filter, ~4 min)
#  12. coarse haze pass       scripts/train_global_stage.py coarse_pass (no weights: switched on, seconds)
#  13. exposure curve again    scripts/train_global_stage.py tone_curve --replace (dark scenes that keep their
#                             white point, dark windows of the photos; ~9 min)
#  14. JPEG projection        scripts/train_global_stage.py jpeg_projection (no weights: switched on, seconds)
#  15. whole-photo exposure   scripts/train_global_stage.py photo_tone_curve (a second exposure curve, used on
#                             whole photos it finds under-exposed, allowed to brighten more; ~8 min)
#  16. JPEG expert           scripts/train_jpeg_expert.py (the U-Net's shallow layers fine-tuned on JPEG alone; the
#                             projection's gate routes JPEG-only inputs to it; 16,000 steps, ~47 min on
#                             session 29's CPU, about twice that on the slower CPUs of earlier sessions)
#  17. heavy snow              configs/default/snow_polish.yaml (the U-Net's layers that the expert has its own copy of,
#                             on stage 6's mixture plus heavy snow; ~20 min), then scripts/splice_unet.py puts them
#                             into stage 16's full model
#  18. whole images          scripts/set_arch_option.py (no weights: the U-Net restores images up to 4 MP whole,
#                             whole_image_pixels; seconds)
#  19. quality reports of stages 3-18: benchmarks/default_model.py on the held-out photos
# On a quiet 2-core CPU stages 1-6 take about 2 h 45 min and stages 8-11 about 82 min (per-stage times in
# anyrestore/weights/README.md).
# Stage 7 needs a GPU (about 21 minutes on one H100; about 14 hours on 2 CPU cores): STAGE7=auto (the default) runs
# it only when CUDA is available, STAGE7=1 always, STAGE7=0 never. Stages 8-16 run on the last U-Net (stage 7's,
# else stage 6's). The shipped weights are stage 18's on stage 7.
# Iterations can be scaled for the machine at hand:
#   PRETRAIN_ITERS=... FINETUNE_ITERS=... FULL_ITERS=... LONG_ITERS=... BALANCED_ITERS=... POLISH_ITERS=... \
#   bash scripts/train_default.sh
# The defaults are the shipped weights' values. TRAIN_OVERRIDES adds recipe overrides to every stage, e.g. on a GPU
# (the trainer and MAC pick CUDA by themselves when it is there):
#   TRAIN_OVERRIDES="data.batch_size=32 data.crop=128 data.num_workers=15" LONG_ITERS=... bash scripts/train_default.sh
# Every stage resumes from its latest checkpoint when re-run (--resume), so an interrupted run loses nothing.
# Earlier releases came from longer chains of stages; their recipes are in the git history
# (scripts/train_default.sh at commit 4f99327).
set -euo pipefail
cd "$(dirname "$0")/.."
PRETRAIN_ITERS=${PRETRAIN_ITERS:-1500}
FINETUNE_ITERS=${FINETUNE_ITERS:-2000}
FULL_ITERS=${FULL_ITERS:-1800}
LONG_ITERS=${LONG_ITERS:-5000}
BALANCED_ITERS=${BALANCED_ITERS:-8000}
POLISH_ITERS=${POLISH_ITERS:-12800}
STAGE7=${STAGE7:-auto}
case "$STAGE7" in auto|0|1) ;; *) echo "train_default.sh: STAGE7 must be auto, 0 or 1, got '$STAGE7'" >&2; exit 2;; esac
RUNS=${RUNS:-runs}

latest() {  # weights file of a run's latest checkpoint
  python -c "import json,sys; d=sys.argv[1]; print(d + '/ckpt/' + json.load(open(d + '/ckpt/latest.json'))['weights'])" "$1"
}
train() {  # recipe run-dir overrides...
  local recipe=$1 dir=$2; shift 2
  if [ -f "$dir/ckpt/latest.json" ]; then resume=--resume; else resume=; fi
  # shellcheck disable=SC2086  # TRAIN_OVERRIDES is a list of key=value words
  [ -f "$dir/done.txt" ] || anyrestore train "$recipe" "$@" ${TRAIN_OVERRIDES:-} --run-dir "$dir" $resume
}

[ -d data_cache/default_photos/train ] || python scripts/prepare_default_photos.py -o data_cache/default_photos
python scripts/make_dead_leaves.py -o data_cache/dead_leaves --count 600 --size 192
python scripts/make_dark_photos.py data_cache/default_photos/train -o data_cache/dark_photos --copies 3
python scripts/make_dark_photos.py data_cache/default_photos/train -o data_cache/dark_photos_mild --copies 2 \
  --gamma 1.0 1.6 --scale 0.55 0.9

train configs/default/pretrain.yaml "$RUNS/default-pretrain" train.iterations="$PRETRAIN_ITERS"
PRETRAINED=$(latest "$RUNS/default-pretrain")

[ -f "$RUNS/default-mac/ranking.json" ] || anyrestore mac --model "$PRETRAINED" --param-key params \
  --data data_cache/default_photos/train+ram-paper --images 4 --steps 50 --crop 64 --seed 0 -o "$RUNS/default-mac"

train configs/default/finetune.yaml "$RUNS/default-finetune" train.iterations="$FINETUNE_ITERS" \
  model.pretrained="$PRETRAINED" objective.ranking="$RUNS/default-mac"
train configs/default/full.yaml "$RUNS/default-full" train.iterations="$FULL_ITERS" \
  model.pretrained="$RUNS/default-finetune/model.safetensors"
train configs/default/long.yaml "$RUNS/default-long" train.iterations="$LONG_ITERS" \
  model.pretrained="$RUNS/default-full/model.safetensors"
train configs/default/full_balanced.yaml "$RUNS/default-full-balanced" train.iterations="$BALANCED_ITERS" \
  model.pretrained="$RUNS/default-long/model.safetensors"
stages="finetune full long full-balanced"
if [ "$STAGE7" = 1 ] || { [ "$STAGE7" = auto ] && python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; }; then
  train configs/default/gpu_polish.yaml "$RUNS/default-gpu-polish" train.iterations="$POLISH_ITERS" \
    model.pretrained="$RUNS/default-full-balanced/model.safetensors"
  stages="$stages gpu-polish"
  last=gpu-polish
else
  if [ "$STAGE7" = 0 ]; then why="STAGE7=0"; else why="no CUDA device; STAGE7=1 runs it anyway"; fi
  echo "Stage 7 (configs/default/gpu_polish.yaml) skipped ($why)."
  last=full-balanced
fi

[ -f "$RUNS/default-tone-curve/model.safetensors" ] || python scripts/train_global_stage.py tone_curve \
  --weights "$RUNS/default-$last/model.safetensors" -o "$RUNS/default-tone-curve/model.safetensors" \
  --cache "$RUNS/default-tone-curve/training_set.pt"
[ -f "$RUNS/default-sharpen/model.safetensors" ] || python scripts/train_global_stage.py sharpen \
  --weights "$RUNS/default-tone-curve/model.safetensors" -o "$RUNS/default-sharpen/model.safetensors" \
  --cache "$RUNS/default-sharpen/training_set.pt"
[ -f "$RUNS/default-motion-deblur/model.safetensors" ] || python scripts/train_global_stage.py motion_deblur \
  --weights "$RUNS/default-sharpen/model.safetensors" -o "$RUNS/default-motion-deblur/model.safetensors" \
  --cache "$RUNS/default-motion-deblur/training_set.pt"
[ -f "$RUNS/default-chroma-denoise/model.safetensors" ] || python scripts/train_global_stage.py chroma_denoise \
  --weights "$RUNS/default-motion-deblur/model.safetensors" -o "$RUNS/default-chroma-denoise/model.safetensors" \
  --cache "$RUNS/default-chroma-denoise/training_set.pt"
[ -f "$RUNS/default-coarse-pass/model.safetensors" ] || python scripts/train_global_stage.py coarse_pass \
  --weights "$RUNS/default-chroma-denoise/model.safetensors" -o "$RUNS/default-coarse-pass/model.safetensors"
[ -f "$RUNS/default-exposure/model.safetensors" ] || python scripts/train_global_stage.py tone_curve --replace \
  --weights "$RUNS/default-coarse-pass/model.safetensors" -o "$RUNS/default-exposure/model.safetensors" \
  --scene-gamma 1.0 1.8 --scene-scale 0.92 1.0 --dark-window-share 0.15 --run default-exposure \
  --cache "$RUNS/default-exposure/training_set.pt"
[ -f "$RUNS/default-jpeg-projection/model.safetensors" ] || python scripts/train_global_stage.py jpeg_projection \
  --weights "$RUNS/default-exposure/model.safetensors" -o "$RUNS/default-jpeg-projection/model.safetensors" \
  --release 15
[ -f "$RUNS/default-photo-exposure/model.safetensors" ] || python scripts/train_global_stage.py photo_tone_curve \
  --weights "$RUNS/default-jpeg-projection/model.safetensors" -o "$RUNS/default-photo-exposure/model.safetensors" \
  --scene-gamma 1.0 1.8 --scene-scale 0.92 1.0 --dark-window-share 0.05 --dark-share 0.45 --scene-share 0.3 \
  --run default-photo-exposure --release 17 --cache "$RUNS/default-photo-exposure/training_set.pt"
resume_expert=()
[ -f "$RUNS/default-jpeg-expert/model.resume.pt" ] && resume_expert=(--resume)
[ -f "$RUNS/default-jpeg-expert/model.safetensors" ] || python scripts/train_jpeg_expert.py \
  --weights "$RUNS/default-photo-exposure/model.safetensors" -o "$RUNS/default-jpeg-expert/model.safetensors" \
  --release 20 "${resume_expert[@]}"
train configs/default/snow_polish.yaml "$RUNS/default-snow-polish" \
  model.pretrained="$RUNS/default-jpeg-expert/model.safetensors"
[ -f "$RUNS/default-snow/model.safetensors" ] || python scripts/splice_unet.py \
  --weights "$RUNS/default-jpeg-expert/model.safetensors" --unet "$RUNS/default-snow-polish/model.safetensors" \
  -o "$RUNS/default-snow/model.safetensors" --release 21
# stage 18 (metadata only): the U-Net restores images up to 4 MP whole (the preset's whole_image_pixels)
[ -f "$RUNS/default-whole-image/model.safetensors" ] || python scripts/set_arch_option.py \
  --weights "$RUNS/default-snow/model.safetensors" -o "$RUNS/default-whole-image/model.safetensors" \
  --option whole_image_pixels=4194304 --release 22
stages="$stages tone-curve sharpen motion-deblur chroma-denoise coarse-pass exposure jpeg-projection photo-exposure"
stages="$stages jpeg-expert snow whole-image"
last=whole-image

for stage in $stages; do
  python benchmarks/default_model.py --model "$RUNS/default-$stage/model.safetensors" \
    --json "$RUNS/default-$stage/quality.json" --markdown "$RUNS/default-$stage/quality.md"
done
echo "Compare the stages' quality.md files in $RUNS/default-*/; the shipped weights are"
echo "$RUNS/default-$last/model.safetensors (copy to anyrestore/weights/nafnet-default.safetensors)."
