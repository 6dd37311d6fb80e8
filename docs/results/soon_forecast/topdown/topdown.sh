#!/bin/bash
# issue 30 items 1-2 on top-down clips: configs/tritemporal_small.yaml as it is (joint SOON, today's),
# floored at copy-last, and floored + autoregressive (same 1 s SOON window), seeds 0-2; then SOON
# against copy-last on the 100 held-out top-down videos of issue 27 (env seeds 100000-100099).
# Runs niced: it fills the CPU the front-camera queue leaves.
source /work/main/.venv/bin/activate
cd /work/exp30
held=/work/exp27/heldout100
declare -A SETS
SETS[joint]=""
SETS[floor]="--set predictor.soon_base=copy_last"
SETS[floorar]="--set predictor.soon_base=copy_last --set predictor.soon_mode=autoregressive"
for s in 0 1 2; do
  for v in joint floor floorar; do
    run=${v}_s$s
    [ -f $run/done ] && continue
    rm -rf $run
    echo "$(date +%T) start $run" >> topdown.log
    tritemporal train --config /work/main/configs/tritemporal_small.yaml ${SETS[$v]} \
      --set train.seed=$s --set train.run_dir=/work/exp30/$run > $run.log 2>&1 && touch $run/done \
      && echo "$(date +%T) done $run" >> topdown.log || echo "$(date +%T) FAILED $run" >> topdown.log
  done
done
echo "$(date +%T) start compare" >> topdown.log
tritemporal compare joint_s0 joint_s1 joint_s2 floor_s0 floor_s1 floor_s2 floorar_s0 floorar_s1 floorar_s2 \
  --names joint_s0 joint_s1 joint_s2 floor_s0 floor_s1 floor_s2 floorar_s0 floorar_s1 floorar_s2 \
  --group joint=joint_s0,joint_s1,joint_s2 --group floor=floor_s0,floor_s1,floor_s2 \
  --group floorar=floorar_s0,floorar_s1,floorar_s2 \
  --data $held --out soon_topdown --bootstrap 1000 --parts soon > soon_topdown.log 2>&1
echo "$(date +%T) done compare" >> topdown.log
