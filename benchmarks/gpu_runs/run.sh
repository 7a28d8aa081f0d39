#!/bin/bash
# Timed GPU run of notebook 03 (issue 13): unpack the data, warm the input cache, run 02 then 03, then the model benchmark.
set -o pipefail
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg TQDM_DISABLE=1
mkdir -p /tmp/data && tar -xJf .device/mitdb.tar.xz -C /tmp/data || exit 1
export EKG_DATA_DIR=/tmp/data/mitdb EKG_OUTPUT_DIR=/tmp/run EKG_CACHE_DIR=/tmp/cache
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "CPU cores: $(nproc)";
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)";
  echo "setup (wheels, data unpack): $(( $(date +%s) - T0 )) s"; } 2>&1 | tee $OUT/env.txt
T1=$(date +%s)
python3 benchmarks/run_notebook.py notebooks/02_wrangling.ipynb > $OUT/02_gpu.log 2>&1 || { tail -30 $OUT/02_gpu.log; exit 1; }
tail -1 $OUT/02_gpu.log
T2=$(date +%s)
# the signal model's input cache, every record and recorder version, in parallel (notebook 03 would build it one by one)
python3 - <<'PY' 2>&1 | tee -a $OUT/env.txt
import time
from multiprocessing import Pool
from ekg import data, features
def build(job):
    features.load_inputs([job[0]], job[1])
t = time.perf_counter()
with Pool(16) as pool:
    pool.map(build, [(r, name) for r in data.RECORDS for name in features.RECORDERS])
print(f"input cache, {len(data.RECORDS)} records x {len(features.RECORDERS)} recorders on 16 processes: {time.perf_counter() - t:.0f} s")
PY
echo "02 (beat tables, splits): $(( T2 - T1 )) s" | tee -a $OUT/env.txt
T3=$(date +%s)
python3 benchmarks/run_notebook.py notebooks/03_training.ipynb 2>&1 | tee $OUT/03_gpu.log | grep -E "^(==|GPU|cross-valid|whole|this cell|recommended|03_training)" 
echo "03 wall: $(( $(date +%s) - T3 )) s; since start $(( $(date +%s) - T0 )) s" | tee -a $OUT/env.txt
if [ $(( $(date +%s) - T0 )) -lt 470 ]; then
  timeout $(( 560 - ($(date +%s) - T0) )) python3 benchmarks/bench_models.py --steps 20 > $OUT/bench_gpu.log 2>&1; cat $OUT/bench_gpu.log
fi
echo "total $(( $(date +%s) - T0 )) s"
