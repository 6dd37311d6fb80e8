#!/bin/bash
# session 2026-12-07 (4th) serial CPU queue: after the action fine-tune, (1) the NOW probes of the
# front base's EMA teacher at step 300 (the trend that decides a longer pretrain), (2) eval with the
# action report on the 100 one-camera held-out videos, (3) ceiling seed 2 and the ceilings' compare,
# (4) issue 30's top-down floor / rollout seeds.
source /work/main/.venv/bin/activate
held=/work/exp29/front_fixed_heldout100
log=/work/exp30/front/phase1.log
while [ ! -f /work/exp30/front/actions_s0/done ]; do sleep 20; done
echo "$(date +%T) start now trend" >> $log
cd /work/exp29/fixed
tritemporal compare teacher:pretrain_s0/checkpoints/step_00000300 --names base_s0_step300 \
  --parts now --data $held --bootstrap 1000 --out /work/exp30/front/now_step300 > /work/exp30/front/now_step300.log 2>&1
echo "$(date +%T) start eval actions" >> $log
cd /work/exp30/front
tritemporal eval --checkpoint actions_s0 --data $held --out eval_actions_s0 > eval_actions_s0.log 2>&1
echo "$(date +%T) start ceiling_s2" >> $log
cd /work/exp29/fixed && ./queue.sh ceiling_s2
ROWS=ceiling PARTS="eventually ttm" ./cmp.sh $held /work/exp30/front/ceiling_heldout100 0 1 2
echo "$(date +%T) start topdown" >> $log
cd /work/exp30 && ./topdown.sh
echo "$(date +%T) done phase1" >> $log
