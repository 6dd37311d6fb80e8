#!/bin/bash
# issue 29: the held-out comparison of the one-camera, one-look design on 100 held-out front
# videos made the same way (env seeds 100000-100099, --fixed-camera --fixed-look). Rows: random init
# (pretrain_front's architecture), the ego-status guard, per seed the front base (the run's EMA
# teacher), its student with the predictor (the tri-temporal forecast) and the 600-step
# supervised ceiling (ROWS, default "base tri ceiling", picks among them); then any extra rows
# given as NAME=SOURCE (e.g. tri_floor_s0=floor_s0).
# PARTS, if set, are compare's --parts (e.g. "eventually ttm" for ceilings alone).
# Usage: [ROWS="base ceiling"] [PARTS=...] cmp.sh HELD_OUT_FOLDER OUT SEEDS... [NAME=SOURCE...]
source /work/main/.venv/bin/activate
cd /work/exp29/fixed
held=$1; out=$2; shift 2
SEEDS=(); EXTRA=()
for arg in "$@"; do [[ $arg == *=* ]] && EXTRA+=($arg) || SEEDS+=($arg); done
SRC=(); NAMES=(); declare -A G
for s in "${SEEDS[@]}"; do
  for pair in base:teacher:pretrain_s$s tri:pretrain_s$s ceiling:ceiling_s$s; do
    row=${pair%%:*}; src=${pair#*:}
    [[ " ${ROWS:-base tri ceiling} " == *" $row "* ]] && [ -d ${src#teacher:} ] || continue
    SRC+=($src); NAMES+=(${row}_s$s); G[$row]+="${row}_s$s,"
  done
done
for row in "${EXTRA[@]}"; do NAMES+=(${row%%=*}); SRC+=(${row#*=}); done
OPTS=()
[ -n "$PARTS" ] && OPTS+=(--parts $PARTS)
if [ ${#SEEDS[@]} -gt 1 ]; then
  for row in "${!G[@]}"; do OPTS+=(--group $row=${G[$row]%,}); done
fi
tritemporal compare random:pretrain_s${SEEDS[0]} ego-status "${SRC[@]}" --names random_init ego_status "${NAMES[@]}" \
  "${OPTS[@]}" --data $held --bootstrap 1000 --out $out > $out.log 2>&1
