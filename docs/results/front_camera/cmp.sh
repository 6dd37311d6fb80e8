#!/bin/bash
# issue 29, item 4: the held-out comparison on 100 front-camera videos (env seeds 100000-100099).
# Usage: cmp.sh SEEDS... (e.g. cmp.sh 0, or cmp.sh 0 1 2 once every seed has run: groups then).
# Rows: random init (pretrain_front's architecture, fresh weights), the ego-status guard, per seed
# the front base (the pretrain run's EMA teacher: what ships), the same run's student with its
# predictor (the tri-temporal forecast), the front quickstart from the base, the ceiling from
# random weights (configs/ceiling.yaml) and fine-tuned from the base (`ceilingft`).
source /work/main/.venv/bin/activate
cd /work/exp29/runs
SRC=(); NAMES=(); declare -A G
for s in "$@"; do
  for pair in base:teacher:pretrain_s$s tri:pretrain_s$s quickstart:quickstart_s$s ceiling:ceiling_s$s ceilingft:ceilingft_s$s; do
    row=${pair%%:*}; src=${pair#*:}
    [ -d ${src#teacher:} ] || continue
    SRC+=($src); NAMES+=(${row}_s$s); G[$row]+="${row}_s$s,"
  done
done
GROUP_ARGS=()
if [ $# -gt 1 ]; then
  for row in "${!G[@]}"; do GROUP_ARGS+=(--group $row=${G[$row]%,}); done
fi
tritemporal compare random:pretrain_s$1 ego-status "${SRC[@]}" --names random_init ego_status "${NAMES[@]}" \
  "${GROUP_ARGS[@]}" --data /work/exp29/front_heldout100 --bootstrap 1000 --out cmp_heldout100 > cmp_heldout100.log 2>&1
