#!/usr/bin/env bash
# On a machine with GPUs: the full-data table of conf/bench-gpu.toml (324 variants x 3 epochs, one
# candidate per GPU at a time; resumable: run it again after an interruption), then the strategy
# and fidelity curves on it. The table lands in benchmarks/tables/bench-gpu.json.
#   scripts/gpu_bench_table.sh PATH/TO/cifar10-jpeg.tar.gz [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the CIFAR-10 archive or folder}"
jobs="${2:-1}"
.venv/bin/nas-agent doctor
NAS_AGENT_DATA="$data" .venv/bin/nas-agent bench build -c bench-gpu --device cuda -j "$jobs" --noise 12
.venv/bin/nas-agent bench run --table benchmarks/tables/bench-gpu.json -c bench-gpu --seeds 50 \
    -s random,mutate,optuna,mutate+optuna --fidelity full,halving --workers "$(nproc)"
