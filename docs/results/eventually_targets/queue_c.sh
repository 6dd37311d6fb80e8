#!/bin/bash
# Lane C: the weak-label cross-entropy row (the ceiling's objective on `label --from-ego` labels).
source "$(dirname "$0")/rows.sh"
for s in 0 1 2; do
  train_run C weak_ce_s$s $BASE ${ROW[weak_ce]}
done
