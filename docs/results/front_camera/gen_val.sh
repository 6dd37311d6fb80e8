#!/bin/bash
# validation videos for choosing the resolution (never the test set): env seeds 200000-200023
while pgrep -f "gen.sh" > /dev/null; do sleep 5; done
/work/main/.venv/bin/tritemporal make-clips --camera front --out front_val24 --num 24 --seed 200000 --fps 4 --image-size 128x256 --seconds 20 --workers 2 > gen_val24.log 2>&1
