#!/bin/bash
# issue 29: the front-camera corpora (train 300 videos, held-out 100 videos at env seeds 100000+)
T=/work/main/.venv/bin/tritemporal
$T make-clips --camera front --out front_train300 --num 300 --seed 0 --fps 4 --image-size 128x256 --seconds 20 --workers 2 > gen_train300.log 2>&1
$T make-clips --camera front --out front_heldout100 --num 100 --seed 100000 --fps 4 --image-size 128x256 --seconds 20 --workers 2 > gen_heldout100.log 2>&1
