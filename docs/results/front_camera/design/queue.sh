#!/bin/bash
# issue 29: the 600-step supervised ceiling (configs/ceiling.yaml at the front clips' 128x256,
# patch 32; 60 warmup steps) on each corpus of gen.sh, then compared with random init on that
# corpus's held-out videos. Usage: queue.sh z2 geom fixed
source /work/main/.venv/bin/activate
BASE="--config /work/main/configs/ceiling.yaml --set data.source=videos --set clip.image_size=[128,256] --set clip.patch=32 --set data.highway.camera=front --set data.highway.image_size=[128,256] --set train.steps=600 --set optim.warmup_steps=60 --set train.ckpt_every=300"
for run in "$@"; do
  [ -f $run/done ] && continue
  tritemporal train $BASE --set data.root=front_${run}_train300 --set train.run_dir=$run >> $run.log 2>&1 \
    && tritemporal compare random:$run $run --names random_init ceiling --data front_${run}_heldout100 --bootstrap 200 --out cmp_$run > cmp_$run.log 2>&1 \
    && touch $run/done
done
