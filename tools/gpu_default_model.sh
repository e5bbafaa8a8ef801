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
# What the device tool's habits require (learnt on 2026-12-04's second run, which trained nothing: 665 s of device
# time spent, see model/README.md "GPU run 2"):
#   - STABLE_DIR=/root/stash/repo in every call (above): each call re-copies the tree under running processes;
#   - `source /root/stash/setup.sh` in ONE call only: sourced again, its join finds no parts and truncates the GGUF
#     (`train` now stops at once on an empty GGUF instead of failing in the model load);
#   - no `pkill -f PATTERN` in a call's own command line: the pattern matches the call's shell (rc -1, no output);
#   - `train-bg`, then `wait SECONDS` calls: a failure returns at once, where a blind `sleep` spent the budget.
# Second run's calls as planned (seeds 3001+, configs/lm/default_model_gpu2.yaml):
#   1 [.gpu/init1]: mkdir -p /root/stash && cp .gpu/init1/* /root/stash/ && export STABLE_DIR=/root/stash/repo
#                   SEED_T2V=3000 SEED_EDIT=3100 SEED_IMG=3201 && bash tools/gpu_default_model.sh build
#   2, 3 [.gpu/p1], [.gpu/p2]: mkdir -p /root/stash && cp .gpu/pK/* /root/stash/
#   4 [.gpu/p3, data/lm13/chat]: cp .gpu/p3/* /root/stash/ && source /root/stash/setup.sh && export
#                   STABLE_DIR=/root/stash/repo CFG=configs/lm/default_model_gpu2.yaml INIT_TAR=/root/stash
#                   TRAIN_SETS="--set train.init_from=/root/stash/model" DEADLINE=$(( $(date +%s) + B - 60 ))
#                   OUT=/root/stash/out && bash tools/gpu_default_model.sh train-bg && bash tools/gpu_default_model.sh wait 560
#   5: STABLE_DIR=/root/stash/repo bash tools/gpu_default_model.sh wait 560 && cp /root/stash/out/* $OUT/
#   (B = the budget left before call 4, from `status`)
#
# `train` needs the backbone (VIDGPT_SMOLLM_GGUF, set by the device's setup.sh) and the chat answers made here
# (data/lm13/chat, carried). It is written to end before DEADLINE (epoch seconds; default: START + CALL_S):
# the training gets what is left after the model load and the shipping. If the first attempt fails early
# (a CUDA-only error, non-finite losses in bf16), a second one runs in fp32 (TF32 matmuls) at half the lr.
# Back here:  cat $FILES/model.tar.part.* | tar -x -C runs/gpu   (then tools/ship_model.py's card, eval, ...)
set -uo pipefail
cd "$(dirname "$0")/.."
# STABLE_DIR (e.g. /root/stash/repo): run from a private copy of the code, made on first use. Every device call
# re-copies the working tree, and a builder or a training that imports a module while that copy is under way dies
# with "No module named ..." (2026-12-04, second GPU run: all 15 builders). The chat answers (data/lm13) are copied
# again on every entry, since they may arrive in a later call than the code.
if [ -n "${STABLE_DIR:-}" ] && [ "${1:-}" != pack-init ] && [ "$PWD" != "$(realpath -m "$STABLE_DIR")" ]; then
  mkdir -p "$STABLE_DIR/data"
  [ -e "$STABLE_DIR/.copied" ] || { cp -r src tools configs tokenizer pyproject.toml "$STABLE_DIR/" && touch "$STABLE_DIR/.copied"; } || exit 1
  [ -d data/lm13 ] && cp -r data/lm13 "$STABLE_DIR/data/"
  exec bash "$STABLE_DIR/tools/gpu_default_model.sh" "$@"
fi
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
SEED_T2V=${SEED_T2V:-1000}     # builder i renders seed SEED_T2V + i (a second run takes fresh seeds: 3000, 3100, 3201)
SEED_EDIT=${SEED_EDIT:-1100}
SEED_IMG=${SEED_IMG:-1201}
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
  # only what train.init_from reads (vidgpt.json, new rows, adapter): the card and the text tokenizer stay here
  b=$(basename "$src")
  tar -C "$(dirname "$src")" -cf - "$b/vidgpt.json" "$b/new_rows.safetensors" "$b/adapter" --transform "s,^$b,model," \
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
  for i in $(seq 1 "$T2V_PROCS"); do build_one "t2v$i" "$ROOT/t2v/s$i" --num "$T2V_NUM" --seed $((SEED_T2V + i)); done
  for i in 1 2; do build_one "edit$i" "$ROOT/edit/s$i" --num 0 --edits "$EDITS" --seed $((SEED_EDIT + i)); done
  build_one img "$ROOT/img/s1" --num 0 --images "$IMAGES" --set 'sizes=[huge]' --seed "$SEED_IMG" --text-out "$ROOT/text"
  echo "started $((T2V_PROCS + 3)) builders; logs in $LOGS"
  ;;
status)
  n_done=$(ls "$LOGS"/*.DONE 2>/dev/null | wc -l)
  n_files=$(find "$ROOT" -name '*.parquet' 2>/dev/null | wc -l)
  echo "builders done: $n_done; parquet chunks: $n_files"
  for f in "$LOGS"/*.log; do [ -s "$f" ] && { echo "== $f"; tail -n 2 "$f"; }; done
  ;;
wait)  # [SECONDS]: until the train stage (started in the background) ends or SECONDS pass; its tail either way
  lim=${2:-540}; t0=$(date +%s)
  while [ ! -e "$LOGS/TRAIN.END" ] && [ $(( $(date +%s) - t0 )) -lt "$lim" ]; do sleep 5; done
  tail -n 25 "$LOGS/train.out" 2>/dev/null
  [ -e "$LOGS/TRAIN.END" ] && { echo "train stage ended: rc $(cat "$LOGS/TRAIN.END")"; exit 0; }
  echo "train stage still running after ${lim}s"; exit 0
  ;;
train-bg)  # the train stage in its own process session (it outlives the call), its output in $LOGS/train.out
  mkdir -p "$LOGS"; rm -f "$LOGS/TRAIN.END"
  setsid bash -c "bash '$0' train; echo \$? > '$LOGS/TRAIN.END'" < /dev/null > "$LOGS/train.out" 2>&1 &
  echo "train stage started in the background; follow it with: bash tools/gpu_default_model.sh wait SECONDS"
  ;;
train)
  START=${START:-$(date +%s)}
  g=${VIDGPT_SMOLLM_GGUF:-}
  if [ -n "$g" ] && [ ! -s "$g" ]; then  # 2026-12-04: setup.sh sourced twice joins no parts into an empty file
    echo "the backbone's GGUF $g is missing or empty: source /root/stash/setup.sh once only (a second time, its parts" \
      "are gone and the join truncates the file); bring the parts again" >&2
    exit 3
  fi
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
  echo "usage: bash tools/gpu_default_model.sh build|status|train|train-bg|wait|pack-init" >&2; exit 2 ;;
esac
