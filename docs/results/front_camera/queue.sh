#!/bin/bash
# issue 29, item 4: the front base (configs/pretrain_front.yaml) and the supervised ceiling
# (configs/ceiling.yaml at the front clips' geometry) on the 300 front training videos, one run at
# a time on the 2 cores, resumed from checkpoints if a session ended mid-run. Usage: queue.sh RUN...
source /work/main/.venv/bin/activate
cd /work/exp29/runs
DATA="--set data.source=videos --set data.root=/work/exp29/front_train300"
declare -A CMD
CMD[pretrain]="--config /work/main/configs/pretrain_front.yaml $DATA"
CMD[ceiling]="--config /work/main/configs/ceiling.yaml $DATA --set clip.image_size=[128,256] --set clip.patch=32 --set data.highway.camera=front --set data.highway.image_size=[128,256]"
CMD[quickstart]="--config /work/main/docs/results/front_camera/quickstart_front.yaml --set data.source=videos --set data.root=/work/exp29/front_train120"
# the supervised ceiling fine-tuned from the front base (issue 28's ceiling row: its base, labels)
CMD[ceilingft]="--config /work/main/docs/results/front_camera/quickstart_front.yaml $DATA --set train.steps=400 --set optim.warmup_steps=40 --set loss.lambda_event=0 --set loss.lambda_ce=1 --set loss.ce_encoder_grad=1"
for run in "$@"; do
  [ -f $run/done ] && continue
  resume=""; [ -d $run/checkpoints ] && resume="--resume"
  echo "$(date +%T) start $run" >> queue.log
  tritemporal train ${CMD[${run%_s*}]} --set train.seed=${run##*_s} --set train.run_dir=/work/exp29/runs/$run $resume >> $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> queue.log || echo "$(date +%T) FAILED $run" >> queue.log
done
