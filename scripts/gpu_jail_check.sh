#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: which walls hold, then one candidate trained through the jail on CUDA
# (the jail binds /dev/nvidia* only for CUDA jobs), then the jail's overhead table.
#   scripts/gpu_jail_check.sh PATH/TO/cifar10-jpeg.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the CIFAR-10 archive or folder}"
out=runs/gpu-jail-check
rm -rf "$out" && mkdir -p "$out"
.venv/bin/nas-agent doctor
.venv/bin/nas-agent generate --out "$out/candidates" --limit 1 --seed 0
.venv/bin/nas-agent train "$out"/candidates/*.py --device cuda --epochs 1 --train-subset 10000 --test-subset 2000 \
    --data-dir "$data" --catalog "$out/catalog.sqlite"
.venv/bin/nas-agent leaderboard --catalog "$out/catalog.sqlite"
.venv/bin/python benchmarks/sandbox_overhead.py --data-dir "$data" --rounds 2
