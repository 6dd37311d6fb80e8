#!/bin/bash
# 1) as soon as the floored front base is trained: SOON against copy-last, floored vs today's (seed 0);
# 2) when pretrain_s2 is done: random init, the front bases of seeds 0-2 and the floored student,
#    every column; 3) when the ceilings are done: random init, ego-status and the ceilings of
#    seeds 0-2, outcome and time to maneuver (the unfloored students: seed 0 in cmp_fixed_heldout100)
source /work/main/.venv/bin/activate
cd /work/exp29/fixed
while [ ! -f floor_s0/done ]; do sleep 30; done
echo "$(date +%T) start floor soon compare" >> queue.log
tritemporal compare pretrain_s0 floor_s0 --names tri_s0 tri_floor_s0 --parts soon \
  --data /work/exp29/front_fixed_heldout100 --bootstrap 1000 --out cmp_floor_soon > cmp_floor_soon.log 2>&1
echo "$(date +%T) done floor soon compare" >> queue.log
while [ ! -f pretrain_s2/done ]; do sleep 30; done
echo "$(date +%T) start base compare" >> queue.log
ROWS="base" ./cmp.sh /work/exp29/front_fixed_heldout100 cmp_base_3s 0 1 2 tri_floor_s0=floor_s0 &
while pgrep -f "queue2?.sh" > /dev/null; do sleep 30; done
echo "$(date +%T) start ceiling compare" >> queue.log
ROWS="ceiling" PARTS="eventually ttm" ./cmp.sh /work/exp29/front_fixed_heldout100 cmp_ceiling_3s 0 1 2
wait
echo "$(date +%T) done compares" >> queue.log
