#!/bin/bash
# issue 29, which front corpus can anything learn from? Train (300 videos, env seeds 0-299) and
# held-out (100, seeds 100000-100099) corpora that change one thing against gen.sh's fully varied
# ones: a longer focal length (--zoom 2), the geometry varied with one look (--fixed-look), one
# camera and one look (--fixed-camera --fixed-look). ~6 min a pair with 2 workers.
T="tritemporal make-clips --camera front --fps 4 --image-size 128x256 --seconds 20 --workers 2"
for variant in "z2:--zoom 2" "geom:--fixed-look" "fixed:--fixed-camera --fixed-look"; do
  name=${variant%%:*}; flags=${variant#*:}
  $T $flags --out front_${name}_train300 --num 300 --seed 0 > gen_${name}_train300.log 2>&1
  $T $flags --out front_${name}_heldout100 --num 100 --seed 100000 > gen_${name}_heldout100.log 2>&1
done
