#!/bin/bash
# The issue-28 comparison's training runs: one lane of rows, seeds 0, 1, 2 round by round.
# usage: queue.sh A|B   (two lanes run side by side on the 2 cores)
source "$(dirname "$0")/rows.sh"
if [ "$1" = A ]; then ROWS="ego weak_supcon ceiling ev_window ev_change"; else ROWS="tri_ego vjepa tri_change"; fi
for s in 0 1 2; do
  for row in $ROWS; do
    train_run $1 ${row}_s$s $BASE ${ROW[$row]}
  done
done
