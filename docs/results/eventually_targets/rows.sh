#!/bin/bash
# The issue-28 comparison's rows, sourced by queue.sh, queue2.sh, queue_c.sh and queue3.sh: each
# row is configs/anticipation.yaml ($BASE) with the changes in ROW[row], one run per seed.
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
BASE="--config /work/main/configs/anticipation.yaml --set data.source=videos --set data.root=/work/exp28/train300"
AUTO="--set data.root=/work/exp28/train300_auto --set data.label_events=auto"  # label --from-ego labels
declare -A ROW
ROW[ego]=""
ROW[weak_supcon]="$AUTO --set loss.lambda_supcon=1.0"
ROW[weak_ce]="$AUTO --set loss.lambda_event=0 --set loss.lambda_ce=1 --set loss.ce_encoder_grad=1"
ROW[ceiling]="--set loss.lambda_event=0 --set loss.lambda_ce=1 --set loss.ce_encoder_grad=1"
ROW[ev_window]="--set loss.event_target=window"
ROW[ev_change]="--set loss.event_target=change"
ROW[tri_ego]="--set loss.lambda_vjepa=1 --set loss.lambda_soon=1"
ROW[vjepa]="--set loss.lambda_vjepa=1 --set loss.lambda_event=0"
ROW[tri_change]="--set loss.lambda_vjepa=1 --set loss.lambda_soon=1 --set loss.lambda_event=0.25 --set loss.lambda_supcon=0.1 --set loss.event_target=change --set loss.event_encoder_grad=0"

# train_run LANE RUN ARGS...: `tritemporal train ARGS` as run RUN (<row>_s<seed>), unless it is
# done; resumed from its checkpoints when a killed session left some; logged in lane<LANE>.log.
train_run() {
  local lane=$1 run=$2; shift 2
  [ -f $run/done ] && return
  local resume=""; [ -d $run/checkpoints ] && resume="--resume"
  echo "$(date +%T) start $run" >> lane$lane.log
  tritemporal train "$@" --set train.seed=${run##*_s} --set train.run_dir=/work/exp28/cmp/$run $resume >> $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> lane$lane.log || echo "$(date +%T) FAILED $run" >> lane$lane.log
}
