#!/bin/bash
set -e
source /work/main/.venv/bin/activate
cd /work/exp28/pilot
Q="--config /work/main/configs/quickstart.yaml --set data.source=videos --set data.root=/work/exp28/train300 --set loss.lambda_supcon=0"
EGO="--set loss.event_target=ego --set loss.event_encoder_grad=1 --set loss.lambda_event=1"
ONLY="--set loss.lambda_vjepa=0 --set loss.lambda_soon=0"
run() { name=$1; shift; [ -f $name/done ] || { tritemporal train $Q --set train.run_dir=/work/exp28/pilot/$name "$@" > $name.log 2>&1 && touch $name/done; }; }
run tri_ego_w1 $EGO
run weak_ce $EGO $ONLY --set data.root=/work/exp28/train300_auto --set data.label_events=auto --set loss.lambda_ce=1
run ego_only_b32 $EGO $ONLY --set train.batch_size=32 --set train.steps=400 --set optim.warmup_steps=40
tritemporal compare random:vit-tiny-drive vit-tiny-drive ego-status ego_only tri_ego_w1 weak_ce ego_only_b32 \
  --names random base ego_status ego_only tri_ego_w1 weak_ce ego_only_b32 --data /work/exp28/val24 --out cmp2_val24 \
  --parts eventually ttm --bootstrap 200 > cmp2_val24.log 2>&1
