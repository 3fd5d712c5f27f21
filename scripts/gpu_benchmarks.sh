#!/usr/bin/env bash
# The GPU figures of the training-speed work, in one go (about 30 minutes on one H100):
#   scripts/gpu_benchmarks.sh PATH_TO_CIFAR10 [OUT_DIR [STAGE ...]]
# STAGE: throughput, compile, reference, sweep (default: all four, in this order). Run them one
# at a time where a machine is lent in short slots: the sweep and the 5-epoch paper protocol are
# the longest (about 10 minutes each).
# 1. paper protocol vs fast path, full CIFAR-10, 5 epochs, one fractal candidate;
# 2. the same fast path through torch.compile (compile time counts in epoch 1);
# 3. the reference ResNet-9 with its own recipe (conf/reference.toml): time to >= 93%;
# 4. sweep cost with 1, 2 and 4 candidates sharing the GPU: projected 1,200 x 5-epoch hours.
# Each table is also written to OUT_DIR (default runs/gpu-benchmarks).
set -euo pipefail
data=${1:?usage: scripts/gpu_benchmarks.sh PATH_TO_CIFAR10 [OUT_DIR [STAGE ...]]}
out=${2:-runs/gpu-benchmarks}
shift $(( $# < 2 ? $# : 2 ))
stages=" ${*:-throughput compile reference sweep} "
for stage in $stages; do
    case $stage in throughput|compile|reference|sweep) ;; *) echo "unknown stage: $stage" >&2; exit 2 ;; esac
done
wants() { [[ $stages == *" $1 "* ]]; }
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 COLUMNS=160
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

candidate=(--param N_BLOCKS=4 --param N_COLUMNS=3 --param BASE_CHANNELS=32)   # the template's defaults
full=(--data-dir "$data" --device cuda --train-subset 0 --test-subset 0)
if wants throughput; then
    "$py" benchmarks/train_throughput.py "${full[@]}" "${candidate[@]}" --epochs 5 --workers 4 | tee "$out/throughput.txt"
fi
if wants compile; then
    "$py" benchmarks/train_throughput.py "${full[@]}" "${candidate[@]}" --epochs 5 --only fast --compile \
        | tee "$out/throughput_compile.txt"
fi
if wants reference; then
    "$py" benchmarks/train_throughput.py "${full[@]}" --template templates/resnet9.py --fast-config reference \
        --epochs 10 --only fast | tee "$out/reference.txt"
fi
if wants sweep; then
    for jobs in 1 2 4; do
        "$py" benchmarks/sweep_cost.py --data-dir "$data" --device cuda --config default --space full \
            --train-subset 0 --test-subset 0 --epochs 2 --candidates 8 --jobs "$jobs" | tee "$out/sweep_jobs$jobs.txt"
    done
fi
