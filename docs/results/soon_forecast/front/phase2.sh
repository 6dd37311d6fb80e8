#!/bin/bash
# after phase1: (1) a 300-step fine-tune of vit-tiny-front, configs/front_actions.yaml without
# actions and with the autoregressive SOON (issue 30 item 2 on front clips), then SOON against
# copy-last on the 100 one-camera held-out videos for it, the action fine-tune (its joint twin:
# its actions move nothing, gain 0.001) and the 600-step floored base; (2) configs/soon_rollout.yaml
# (SOON 3 s, 6 steps, floored + autoregressive) and its twin with today's SOON (joint, no floor),
# seed 0, then SOON per step (+0.25 .. +2.75 s) on the 100 held-out top-down videos of issue 27.
source /work/main/.venv/bin/activate
log=/work/exp30/front/phase1.log
while ! grep -q "done phase1" $log; do sleep 30; done
cd /work/exp30/front
run=ftfloorar_s0
if [ ! -f $run/done ]; then
  rm -rf $run; echo "$(date +%T) start $run" >> $log
  tritemporal train --config /work/main/configs/front_actions.yaml \
    --set data.source=videos --set data.root=/work/exp29/front_fixed_train300 --set train.seed=0 \
    --set predictor.action_conditioning=false --set predictor.soon_mode=autoregressive \
    --set train.run_dir=/work/exp30/front/$run > $run.log 2>&1 && touch $run/done
fi
echo "$(date +%T) start front soon compare" >> $log
tritemporal compare /work/exp29/fixed/floor_s0 actions_s0 ftfloorar_s0 \
  --names floor600_s0 ftactions_s0 ftfloorar_s0 --parts soon \
  --data /work/exp29/front_fixed_heldout100 --bootstrap 1000 --out soon_front > soon_front.log 2>&1
mkdir -p /work/exp30/rollout && cd /work/exp30/rollout
declare -A SETS
SETS[rollout_s0]=""
SETS[jointtwin_s0]="--set predictor.soon_base=none --set predictor.soon_mode=joint"
for run in rollout_s0 jointtwin_s0; do
  [ -f $run/done ] && continue
  rm -rf $run; echo "$(date +%T) start $run" >> $log
  tritemporal train --config /work/main/configs/soon_rollout.yaml ${SETS[$run]} \
    --set train.run_dir=/work/exp30/rollout/$run > $run.log 2>&1 && touch $run/done
done
echo "$(date +%T) start rollout compare" >> $log
tritemporal compare rollout_s0 jointtwin_s0 --names rollout_s0 jointtwin_s0 --parts soon \
  --data /work/exp27/heldout100 --bootstrap 1000 --out soon_3s > soon_3s.log 2>&1
echo "$(date +%T) done phase2" >> $log
