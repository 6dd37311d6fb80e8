#!/bin/bash
# the session's time is short: no ceiling_s2 here. When pretrain_s2 ends (its step-600 checkpoint):
# random init and the front bases of seeds 0-2 (every column), then random init, ego-status and the
# ceilings of seeds 0-1 (outcome and time to maneuver)
source /work/main/.venv/bin/activate
cd /work/exp29/fixed
while pgrep -f "run_dir=/work/exp29/fixed/pretrain_s2" > /dev/null; do sleep 20; done
[ -d pretrain_s2/checkpoints/step_00000600 ] && touch pretrain_s2/done || { echo "pretrain_s2 did not finish" >> queue.log; exit 1; }
echo "$(date +%T) done pretrain_s2; start base compare" >> queue.log
ROWS="base" ./cmp.sh /work/exp29/front_fixed_heldout100 cmp_base_3s 0 1 2
echo "$(date +%T) done base compare; start ceiling compare" >> queue.log
ROWS="ceiling" PARTS="eventually ttm" ./cmp.sh /work/exp29/front_fixed_heldout100 cmp_ceiling_2s 0 1
echo "$(date +%T) done compares" >> queue.log
