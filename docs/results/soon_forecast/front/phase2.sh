#!/bin/bash
# after phase1: two 300-step fine-tunes of vit-tiny-front, the twins of configs/front_actions.yaml
# without actions: floored (the action report's unconditioned reference) and floored +
# autoregressive (issue 30 item 2 on front clips); then SOON against copy-last on the 100
# one-camera held-out videos for them, the action fine-tune and the 600-step floored base.
source /work/main/.venv/bin/activate
cd /work/exp30/front
held=/work/exp29/front_fixed_heldout100
log=/work/exp30/front/phase1.log
while ! grep -q "done phase1" $log; do sleep 30; done
DATA="--set data.source=videos --set data.root=/work/exp29/front_fixed_train300 --set train.seed=0"
declare -A SETS
SETS[ftfloor_s0]="--set predictor.action_conditioning=false"
SETS[ftfloorar_s0]="--set predictor.action_conditioning=false --set predictor.soon_mode=autoregressive"
for run in ftfloor_s0 ftfloorar_s0; do
  [ -f $run/done ] && continue
  rm -rf $run
  echo "$(date +%T) start $run" >> $log
  tritemporal train --config /work/main/configs/front_actions.yaml $DATA ${SETS[$run]} \
    --set train.run_dir=/work/exp30/front/$run > $run.log 2>&1 && touch $run/done
done
echo "$(date +%T) start front soon compare" >> $log
tritemporal compare /work/exp29/fixed/floor_s0 ftfloor_s0 ftfloorar_s0 actions_s0 \
  --names floor600_s0 ftfloor_s0 ftfloorar_s0 ftactions_s0 --parts soon \
  --data $held --bootstrap 1000 --out soon_front > soon_front.log 2>&1
echo "$(date +%T) done phase2" >> $log
