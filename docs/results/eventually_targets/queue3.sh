#!/bin/bash
# Seeds 1-2 of the quickstart (configs/quickstart.yaml on the first 120 training videos, as
# make-clips --num 120 --seed 0 writes them), claimed like queue2.sh's runs.
source "$(dirname "$0")/rows.sh"
mkdir -p claims
for run in qs_s1 qs_s2; do
  [ -f $run/done ] && continue
  mkdir claims/$run 2>/dev/null || continue
  train_run $1 $run --config /work/main/configs/quickstart.yaml --set data.source=videos --set data.root=/work/exp28/train120
done
