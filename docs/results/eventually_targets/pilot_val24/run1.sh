#!/bin/bash
# Pilots of the ego EVENTUALLY target (1 seed each), quickstart recipe on the 300-video corpus.
set -e
source /work/main/.venv/bin/activate
cd /work/exp28/pilot
Q="--config /work/main/configs/quickstart.yaml --set data.source=videos --set data.root=/work/exp28/train300 --set loss.lambda_supcon=0"
run() { name=$1; shift; [ -f $name/done ] || { tritemporal train $Q --set train.run_dir=/work/exp28/pilot/$name "$@" > $name.log 2>&1 && touch $name/done; }; }
run ego_frozen --set loss.event_target=ego
run ego_e2e --set loss.event_target=ego --set loss.event_encoder_grad=1
run change --set loss.event_target=change
run ego_only --set loss.event_target=ego --set loss.event_encoder_grad=1 --set loss.lambda_vjepa=0 --set loss.lambda_soon=0 --set loss.lambda_event=1
tritemporal compare random:vit-tiny-drive vit-tiny-drive ego_frozen ego_e2e change ego_only \
  --names random base ego_frozen ego_e2e change ego_only --data /work/exp28/val24 --out cmp_val24 \
  --parts eventually --bootstrap 200 > cmp_val24.log 2>&1
