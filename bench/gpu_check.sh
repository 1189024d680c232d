#!/usr/bin/env bash
# Everything a lent GPU session should run, in one call (about 6-8 minutes on an H200):
# the CUDA tests, then the GPU benchmarks of bench/RESULTS.md. Logs and JSON go to $OUT
# (the device tool's folder) or bench/gpu_out/.
#     bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_perf_options.py 2>&1 | tee "$OUT/tests.log"
# MNIST configuration: fp32 and bf16 at the CPU batch sizes; SAR low-res (128 px): a realistic GPU batch.
$PY bench/unet.py --device cuda --configs mnist --variants fp32,bf16 --repeats 5 \
    --output_json "$OUT/unet_mnist.json" 2>&1 | tee "$OUT/unet.log"
$PY bench/unet.py --device cuda --configs sar_lowres --variants fp32,bf16,bf16_channels_last,compiled_bf16 \
    --forward_batch 64 --train_batch 32 --repeats 5 --output_json "$OUT/unet_sar.json" 2>&1 | tee -a "$OUT/unet.log"
$PY bench/memory.py --device cuda --batch_128 16 --batch_256 8 2>&1 | tee "$OUT/memory.log"
$PY bench/sampling.py --device cuda --batch_size 64 2>&1 | tee "$OUT/sampling.log"
