#!/bin/bash
# after phase2: the NOW probes of the front runs' students (the "tri" rows of cmp.sh), seeds 0-2,
# pooled, against random init on the 100 one-camera held-out videos.
log=/work/exp30/front/phase1.log
while ! grep -q "done phase2" $log; do sleep 30; done
echo "$(date +%T) start student NOW compare" >> $log
cd /work/exp29/fixed && ROWS=tri PARTS=now ./cmp.sh /work/exp29/front_fixed_heldout100 /work/exp30/front/now_students 0 1 2
echo "$(date +%T) done phase3" >> $log
