#!/bin/bash
# The issue-28 comparison: every finished run of queue.sh on a held-out folder.
# usage: compare.sh HELD_OUT OUT [SEEDS]   e.g. compare.sh /work/exp27/heldout100 cmp_heldout100 "0 1 2"
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
data=$1; out=$2; seeds=${3:-"0 1 2"}
SOURCES="random:vit-tiny-drive vit-tiny-drive ego-status"; NAMES="random_init base ego_status"; GRP=""
for row in ego qs weak_supcon weak_ce ev_window ev_change tri_ego vjepa tri_change ceiling; do
  members=""
  for s in $seeds; do
    [ -f ${row}_s$s/done ] || continue
    SOURCES="$SOURCES ${row}_s$s"; NAMES="$NAMES ${row}_s$s"; members="$members,${row}_s$s"
  done
  n=$(echo $members | tr ',' '\n' | grep -c .)
  [ $n -gt 1 ] && GRP="$GRP --group $row=${members#,}"
done
echo tritemporal compare $SOURCES --names $NAMES $GRP --data $data --out $out --parts eventually ttm --bootstrap 1000
tritemporal compare $SOURCES --names $NAMES $GRP --data $data --out $out --parts eventually ttm --bootstrap 1000
