#!/bin/bash
# The issue-28 comparison's remaining runs, one shared list for both lanes: a lane claims a run with
# an atomic mkdir, so two lanes (`queue2.sh A`, `queue2.sh B`) never train the same run. Longest first.
source "$(dirname "$0")/rows.sh"
mkdir -p claims
RUNS="vjepa_s1 tri_change_s1 vjepa_s2 tri_change_s2 weak_supcon_s2 ev_change_s1 ev_window_s2 ev_change_s2 ego_s2 ceiling_s2 tri_ego_s1 tri_ego_s2"
for run in $RUNS; do
  row=${run%_s*}
  [ -f $run/done ] && continue
  mkdir claims/$run 2>/dev/null || continue
  train_run $1 $run $BASE ${ROW[$row]}
done
