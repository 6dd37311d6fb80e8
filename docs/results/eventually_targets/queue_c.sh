#!/bin/bash
# Lane C: the weak-label cross-entropy row (the ceiling's objective on `label --from-ego` labels).
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
BASE="--config /work/main/configs/anticipation.yaml --set data.source=videos --set data.root=/work/exp28/train300_auto --set data.label_events=auto"
ROW="--set loss.lambda_event=0 --set loss.lambda_ce=1 --set loss.ce_encoder_grad=1"
for s in 0 1 2; do
  run=weak_ce_s$s
  [ -f $run/done ] && continue
  resume=""; [ -d $run/checkpoints ] && resume="--resume"
  echo "$(date +%T) start $run" >> laneC.log
  tritemporal train $BASE $ROW --set train.seed=$s --set train.run_dir=/work/exp28/cmp/$run $resume > $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> laneC.log || echo "$(date +%T) FAILED $run" >> laneC.log
done
