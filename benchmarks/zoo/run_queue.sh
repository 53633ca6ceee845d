#!/bin/bash
# Train the zoo one model after another (one thread each), niced; each writes
# benchmarks/zoo/weights/<name>.pt and .json when done. Usage:
#   nohup nice -n 19 bash benchmarks/zoo/run_queue.sh NAME... > /tmp/zoo_queue.log 2>&1 &
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$(dirname "$0")/../.." || exit 1
export PYTHONPATH=$PWD
for name in "$@"; do
    echo "=== $name $(date -u +%H:%M:%S)"
    python benchmarks/zoo/train_zoo.py "$name" || echo "FAILED $name"
done
echo "=== queue done $(date -u +%H:%M:%S)"
