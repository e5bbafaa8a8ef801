#!/usr/bin/env bash
# The default model's one prepared GPU run (issue 11; recipe: configs/lm/default_model_gpu.yaml), in two stages
# that fit the device tool's calls. Run from the project root, on the GPU machine (or on the CPU at toy size to
# rehearse it: the same commands, smaller numbers through the variables below).
#
#   bash tools/gpu_default_model.sh build    # starts the data builders in the background and returns at once
#   bash tools/gpu_default_model.sh status   # what the builders have written so far
#   bash tools/gpu_default_model.sh train    # waits for the builders, trains until the call's deadline, ships
#                                            # the model in delta form and packs it for $OUT (<= 15 MB parts)
#   bash tools/gpu_default_model.sh pack-init model   # HERE, to continue a shipped model on the GPU: its files as
#                                            # .gpu/init1, init2, ... (a 40 MB part each, one device call each, parked
#                                            # in /root/stash like the backbone's); then the train call with
#                                            # INIT_TAR=/root/stash TRAIN_SETS="--set train.init_from=/root/stash/model"
#
# The device call carries the working tree: model/ and checkpoints/ are tracked and too big to travel beside the
# tokenizer and the backbone's parts, so take them out of the index for the calls and put them back after:
#   git rm -r -q --cached model checkpoints; printf '/model/\n/checkpoints/\n' >> .git/info/exclude
#   WITH_SMOLLM=1 bash ../shared/tools/gpu-pack.sh        # the backbone's GGUF + wheels: .gpu/p1..p3
#   ... the device calls (2026-12-04: build + p1, p2, then p3 + chat data carried + train: 602 s held in all) ...
#   git reset -q -- model checkpoints; sed -i '/^\/model\/$/d;/^\/checkpoints\/$/d' .git/info/exclude
#
# `train` needs the backbone (VIDGPT_SMOLLM_GGUF, set by the device's setup.sh) and the chat answers made here
# (data/lm13/chat, carried). It is written to end before DEADLINE (epoch seconds; default: START + CALL_S):
# the training gets what is left after the model load and the shipping. If the first attempt fails early
# (a CUDA-only error, non-finite losses in bf16), a second one runs in fp32 (TF32 matmuls) at half the lr.
# Back here:  cat $FILES/model.tar.part.* | tar -x -C runs/gpu   (then tools/ship_model.py's card, eval, ...)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
VG=(python3 -m vidgpt)
ROOT=${DATA_ROOT:-data/gpu}
LOGS=${LOG_DIR:-$ROOT/logs}
CFG=${CFG:-configs/lm/default_model_gpu.yaml}
RUN=${RUN_DIR:-runs/gpu/video}
T2V_PROCS=${T2V_PROCS:-12}
T2V_NUM=${T2V_NUM:-2200}       # clips per builder
EDITS=${EDITS:-1500}           # edit pairs per edit builder (2 builders)
IMAGES=${IMAGES:-3000}
FRAMES=${FRAMES:-9}
SIZE=${SIZE:-128}
BATCH=${BATCH:-64}             # clips per tokenizer call
WORLD=(--set max_objects=1 --set 'backgrounds=[solid]')
stage=${1:-}

build_one() {  # NAME OUTDIR ARGS...: one builder in its own process session (it outlives the device call)
  setsid bash "$0" _one "$@" < /dev/null > /dev/null 2>&1 &
}

case "$stage" in
pack-init)  # DIR: a shipped model's files in parts for the device calls (run here, not there)
  src=${2:?usage: pack-init MODEL_DIR}
  rm -rf .gpu/init* && mkdir -p .gpu/init
  tar -C "$(dirname "$src")" -cf - "$(basename "$src")" --transform "s,^$(basename "$src"),model," \
    | split -b 40M -d - .gpu/init/model.tar.part.
  k=0
  for f in .gpu/init/model.tar.part.*; do k=$((k + 1)); mkdir -p ".gpu/init$k" && mv "$f" ".gpu/init$k/"; done
  rmdir .gpu/init
  for i in $(seq 1 "$k"); do
    echo "  call: carry [\".gpu/init$i\"]: mkdir -p /root/stash && cp .gpu/init$i/* /root/stash/   ($(du -sh ".gpu/init$i" | cut -f1))"
  done
  exit 0
  ;;
_one)  # one builder, one thread, its own log; a DONE file when it ends well
  name=$2 out=$3; shift 3
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "${VG[@]}" data build-lm --out "$out" --frames "$FRAMES" --size "$SIZE" \
    --batch-size "$BATCH" --no-progress "${WORLD[@]}" "$@" > "$LOGS/$name.log" 2>&1 && touch "$LOGS/$name.DONE"
  ;;
build)
  mkdir -p "$LOGS"
  for i in $(seq 1 "$T2V_PROCS"); do build_one "t2v$i" "$ROOT/t2v/s$i" --num "$T2V_NUM" --seed $((1000 + i)); done
  for i in 1 2; do build_one "edit$i" "$ROOT/edit/s$i" --num 0 --edits "$EDITS" --seed $((1100 + i)); done
  build_one img "$ROOT/img/s1" --num 0 --images "$IMAGES" --set 'sizes=[huge]' --seed 1201 --text-out "$ROOT/text"
  echo "started $((T2V_PROCS + 3)) builders; logs in $LOGS"
  ;;
status)
  n_done=$(ls "$LOGS"/*.DONE 2>/dev/null | wc -l)
  n_files=$(find "$ROOT" -name '*.parquet' 2>/dev/null | wc -l)
  echo "builders done: $n_done; parquet chunks: $n_files"
  for f in "$LOGS"/*.log; do [ -s "$f" ] && { echo "== $f"; tail -n 2 "$f"; }; done
  ;;
train)
  START=${START:-$(date +%s)}
  DEADLINE=${DEADLINE:-$((START + ${CALL_S:-540}))}
  SHIP_S=${SHIP_S:-75}           # final eval + save, shipping, packing
  LOAD_S=${LOAD_S:-60}           # backbone load + extend + row init
  WAIT_S=${BUILD_WAIT_S:-60}     # the most to wait for builders still running
  OUT=${OUT:-runs/gpu/out}
  mkdir -p "$OUT" "$(dirname "$RUN")"
  if [ -n "${INIT_TAR:-}" ]; then  # a shipped model brought in parts (pack-init): unpack it beside them
    cat "$INIT_TAR"/model.tar.part.* | tar -x -C "$INIT_TAR" && echo "unpacked $INIT_TAR/model" || exit 1
  fi
  # 1. data: wait for the builders (bounded), then stop the rest; their finished chunks are usable as they are
  t0=$(date +%s)
  while [ "$(ls "$LOGS"/*.DONE 2>/dev/null | wc -l)" -lt "$((T2V_PROCS + 3))" ] && [ $(( $(date +%s) - t0 )) -lt "$WAIT_S" ]; do
    sleep 5
  done
  pkill -f "vidgpt data build-lm" 2>/dev/null && echo "stopped builders still running after ${WAIT_S}s"
  sleep 1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$OUT/train.log"
  bash "$0" status | tee -a "$OUT/train.log" | head -n 3
  [ -d "$ROOT/text" ] || { echo "no text corpus: writing it"; "${VG[@]}" data build-lm --out "$ROOT/.textonly" --num 0 --text-out "$ROOT/text" --captions-out "$ROOT/.c.jsonl" >/dev/null; }
  # 2. train until the deadline
  attempt() {  # MAX_MINUTES EXTRA_SETS...
    local mins=$1; shift
    echo "training: $mins min $*"
    "${VG[@]}" lm train --config "$CFG" --out "$RUN" --no-progress --set "train.max_minutes=$mins" "$@" 2>&1 | tee -a "$OUT/train.log" | grep -v "^{" | tail -n 40
    return "${PIPESTATUS[0]}"
  }
  mins() { python3 -c "print(max(0.5, round(($1) / 60, 2)))"; }
  left=$(( DEADLINE - $(date +%s) - SHIP_S - LOAD_S ))
  attempt "$(mins "$left")" ${TRAIN_SETS:-}
  rc=$?
  if [ "$rc" != 0 ] && [ ! -d "$RUN/model" ]; then
    left=$(( DEADLINE - $(date +%s) - SHIP_S - LOAD_S ))
    if [ "$left" -ge 90 ] && [ ! -d "$RUN/checkpoints" -o -z "$(ls "$RUN/checkpoints" 2>/dev/null)" ]; then
      echo "first attempt failed (rc $rc); fp32 + TF32 at half the lr for ${left}s"
      rm -rf "$RUN"
      TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 attempt "$(mins "$left")" --set train.bf16=false --set train.lr=5e-4 ${TRAIN_SETS:-}
      rc=$?
    fi
  fi
  # 3. ship (delta form, bf16) from the final model, else the newest checkpoint, and pack it for $OUT
  src="$RUN/model"
  [ -d "$src" ] || src=$(ls -d "$RUN"/checkpoints/step-* 2>/dev/null | tail -n 1)
  cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null
  cp "$RUN/loss_curve.png" "$OUT/" 2>/dev/null
  if [ -n "$src" ] && [ -e "$src" ]; then
    python3 tools/ship_model.py "$src" --out runs/gpu/shipped "${WORLD[@]/--set/--world-set}" \
      --status "GPU run (configs/lm/default_model_gpu.yaml) on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo cpu)" \
      2>&1 | tail -n 15 | tee -a "$OUT/train.log"
    tar -C runs/gpu -cf runs/gpu/model.tar shipped && split -b 15M -d runs/gpu/model.tar "$OUT/model.tar.part."
    ls -la "$OUT"
  else
    echo "nothing to ship (rc $rc)"
  fi
  echo "train stage ended at +$(( $(date +%s) - START ))s of $(( DEADLINE - START ))s (rc $rc)"
  exit "$rc"
  ;;
*)
  echo "usage: bash tools/gpu_default_model.sh build|status|train" >&2; exit 2 ;;
esac
