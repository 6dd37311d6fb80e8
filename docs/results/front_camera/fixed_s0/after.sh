#!/bin/bash
# issue 29: once the front base (seed 0) is trained, compare on the one-camera held-out videos,
# then the transfer to the fully varied held-out videos (every camera and look new to the model).
cd /work/exp29/fixed
while [ ! -f pretrain_s0/done ]; do sleep 20; done
./cmp.sh /work/exp29/front_fixed_heldout100 cmp_fixed_heldout100 0
source /work/main/.venv/bin/activate
tritemporal compare random:pretrain_s0 teacher:pretrain_s0 ceiling_s0 --names random_init base_s0 ceiling_s0 \
  --data /work/exp29/front_heldout100 --bootstrap 1000 --out cmp_transfer_heldout100 > cmp_transfer_heldout100.log 2>&1
