#!/bin/bash
# issue 30 item 3: configs/front_actions.yaml on the 300 one-camera training videos (env seeds 0-299).
source /work/main/.venv/bin/activate
cd /work/exp30/front
s=${1:-0}
tritemporal train --config /work/main/configs/front_actions.yaml \
  --set data.source=videos --set data.root=/work/exp29/front_fixed_train300 \
  --set train.seed=$s --set train.run_dir=/work/exp30/front/actions_s$s > actions_s$s.log 2>&1 && touch actions_s$s/done
