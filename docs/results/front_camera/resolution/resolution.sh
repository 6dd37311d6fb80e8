#!/bin/bash
# issue 29, item 4: choose the clip resolution and patch size for front clips by measurement.
# Per candidate: the training step's time (tritemporal bench, the pretrain_front step: V-JEPA +
# SOON + EVENTUALLY, batch 32, 2 CPU cores) and random-init NOW probes on 24 validation videos
# (env seeds 200000-200023; not the test set). A 1-step run gives each candidate's architecture.
source /work/main/.venv/bin/activate
cd /work/exp29/res
CFG="--config /work/main/configs/pretrain_front.yaml --set data.source=videos --set data.root=/work/exp29/front_train300"
for cand in "64 128 16" "128 256 32" "96 192 16" "128 256 16"; do
  set -- $cand; name=r${1}x${2}p$3
  GEOM="--set clip.image_size=[$1,$2] --set clip.patch=$3"
  [ -f bench_$name.json ] || tritemporal bench $CFG $GEOM --steps 4 --warmup 1 --out bench_$name.json > bench_$name.log 2>&1
  [ "$3$1" = "16128" ] && continue   # 128x256 p16: timed only (4x the tokens of 64x128 p16)
  [ -d run_$name ] || tritemporal train $CFG $GEOM --set train.steps=1 --set train.run_dir=run_$name > run_$name.log 2>&1
  [ -f now_$name/comparison.json ] || tritemporal compare random:run_$name --names random_$name --data /work/exp29/front_val24 \
      --parts now eventually --bootstrap 200 --out now_$name > now_$name.log 2>&1
done
echo done > resolution.done
