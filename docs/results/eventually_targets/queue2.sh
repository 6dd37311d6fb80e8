#!/bin/bash
# The issue-28 comparison's remaining runs, one shared list for both lanes: a lane claims a run with
# an atomic mkdir, so two lanes (`queue2.sh A`, `queue2.sh B`) never train the same run. Longest first.
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
BASE="--config /work/main/configs/anticipation.yaml --set data.source=videos --set data.root=/work/exp28/train300"
declare -A ROW
ROW[ego]=""
ROW[weak_supcon]="--set data.root=/work/exp28/train300_auto --set data.label_events=auto --set loss.lambda_supcon=1.0"
ROW[ceiling]="--set loss.lambda_event=0 --set loss.lambda_ce=1 --set loss.ce_encoder_grad=1"
ROW[ev_window]="--set loss.event_target=window"
ROW[ev_change]="--set loss.event_target=change"
ROW[tri_ego]="--set loss.lambda_vjepa=1 --set loss.lambda_soon=1"
ROW[vjepa]="--set loss.lambda_vjepa=1 --set loss.lambda_event=0"
ROW[tri_change]="--set loss.lambda_vjepa=1 --set loss.lambda_soon=1 --set loss.lambda_event=0.25 --set loss.lambda_supcon=0.1 --set loss.event_target=change --set loss.event_encoder_grad=0"
RUNS="vjepa_s1 tri_change_s1 vjepa_s2 tri_change_s2 weak_supcon_s2 ev_change_s1 ev_window_s2 ev_change_s2 ego_s2 ceiling_s2 tri_ego_s1 tri_ego_s2"
for run in $RUNS; do
  row=${run%_s*}; s=${run##*_s}
  [ -f $run/done ] && continue
  mkdir claims/$run 2>/dev/null || continue
  resume=""; [ -d $run/checkpoints ] && resume="--resume"
  echo "$(date +%T) start $run" >> lane$1.log
  tritemporal train $BASE ${ROW[$row]} --set train.seed=$s --set train.run_dir=/work/exp28/cmp/$run $resume >> $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> lane$1.log || echo "$(date +%T) FAILED $run" >> lane$1.log
done
