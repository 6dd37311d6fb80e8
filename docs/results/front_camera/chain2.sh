#!/bin/bash
# after the running queue (pretrain_s0, ceiling_s0): the front quickstart and the ceiling from the
# base, the seed-0 comparison, then their other seeds (each run resumes from its checkpoints)
cd /work/exp29/runs
while pgrep -f "queue.sh pretrain_s0" > /dev/null; do sleep 10; done
./queue2.sh quickstart_s0 ceilingft_s0
echo "$(date +%T) start cmp s0" >> queue.log; ./cmp.sh 0; echo "$(date +%T) done cmp s0" >> queue.log
./queue2.sh quickstart_s1 quickstart_s2 ceilingft_s1 ceilingft_s2 pretrain_s1 ceiling_s1 pretrain_s2 ceiling_s2
