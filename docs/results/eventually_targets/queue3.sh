#!/bin/bash
# Seeds 1-2 of the quickstart (configs/quickstart.yaml on the first 120 training videos, as
# make-clips --num 120 --seed 0 writes them), claimed like queue2.sh's runs.
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
for run in qs_s1 qs_s2; do
  s=${run##*_s}
  [ -f $run/done ] && continue
  mkdir claims/$run 2>/dev/null || continue
  echo "$(date +%T) start $run" >> lane$1.log
  tritemporal train --config /work/main/configs/quickstart.yaml --set data.source=videos --set data.root=/work/exp28/train120 \
    --set train.seed=$s --set train.run_dir=/work/exp28/cmp/$run >> $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> lane$1.log || echo "$(date +%T) FAILED $run" >> lane$1.log
done
