#!/bin/bash
# issue 29, the design that learns: one camera and one look (`make-clips --fixed-camera --fixed-look`):
# the front base (configs/pretrain_front.yaml) and the 600-step supervised ceiling on the 300
# training videos (env seeds 0-299), one run at a time, resumed after an interruption; floor: the
# front base with the SOON forecast floored at copy-last (predictor.soon_base=copy_last, issue 30
# item 1). Usage: queue.sh RUN... (pretrain_s1, ceiling_s2, floor_s0, ...)
source /work/main/.venv/bin/activate
cd /work/exp29/fixed
DATA="--set data.source=videos --set data.root=/work/exp29/front_fixed_train300"
declare -A CMD
CMD[pretrain]="--config /work/main/configs/pretrain_front.yaml $DATA"
CMD[floor]="${CMD[pretrain]} --set predictor.soon_base=copy_last"
CMD[ceiling]="--config /work/main/configs/ceiling.yaml $DATA --set clip.image_size=[128,256] --set clip.patch=32 --set data.highway.camera=front --set data.highway.image_size=[128,256] --set data.highway.front.vary_look=false --set data.highway.front.vary_geometry=false --set train.steps=600 --set optim.warmup_steps=60"
for run in "$@"; do
  [ -f $run/done ] && continue
  resume=""; [ -d $run/checkpoints ] && resume="--resume"
  echo "$(date +%T) start $run" >> queue.log
  tritemporal train ${CMD[${run%_s*}]} --set train.seed=${run##*_s} --set train.run_dir=/work/exp29/fixed/$run $resume >> $run.log 2>&1 \
    && touch $run/done && echo "$(date +%T) done $run" >> queue.log || echo "$(date +%T) FAILED $run" >> queue.log
done
