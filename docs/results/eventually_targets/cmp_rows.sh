#!/bin/bash
# The issue-28 comparison on the 100 held-out videos, one `compare` per row (its seeds and their
# --group), each started as soon as the row's runs are done, so the comparison overlaps training.
# merge.py then writes the one table and plots from the rows' JSON: every call draws the same
# bootstrap resamples (same videos, --bootstrap, --seed), so the cells are those of one call.
# usage: cmp_rows.sh HELD_OUT OUT_PREFIX
source /work/main/.venv/bin/activate
cd /work/exp28/cmp
data=$1; prefix=$2
run_row() {  # row name, then its sources
  local row=$1; shift
  [ -f $prefix/$row/comparison.json ] && return
  local names="" members=""
  for s in "$@"; do names="$names $(basename $s | sed 's/^random:/random_/')"; done
  local grp=""; [ $# -gt 1 ] && grp="--group $row=$(echo $names | tr ' ' ',')"
  echo "$(date +%T) compare $row" >> $prefix.log
  tritemporal compare "$@" --names $names $grp --data $data --out $prefix/$row --parts eventually ttm --bootstrap 1000 > $prefix.$row.log 2>&1 \
    || echo "$(date +%T) FAILED $row" >> $prefix.log
}
mkdir -p $prefix
tritemporal compare random:vit-tiny-drive vit-tiny-drive ego-status --names random_init base ego_status \
  --data $data --out $prefix/refs --parts eventually ttm --bootstrap 1000 > $prefix.refs.log 2>&1
run_row tri_ego tri_ego_s0
left="weak_ce vjepa tri_change ego qs weak_supcon ev_window ev_change ceiling"
while [ -n "$left" ]; do
  next=""
  for row in $left; do
    if [ -f ${row}_s0/done ] && [ -f ${row}_s1/done ] && [ -f ${row}_s2/done ]; then
      run_row $row ${row}_s0 ${row}_s1 ${row}_s2
    else
      next="$next $row"
    fi
  done
  left=$(echo $next)
  [ -n "$left" ] && sleep 60
done
echo "$(date +%T) all rows compared" >> $prefix.log
