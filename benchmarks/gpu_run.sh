#!/usr/bin/env bash
# Every GPU measurement the GPU paths need, in one run (estimated at five to eight minutes on an H200; not yet run):
#   1. benchmarks/cuda_check.py: the CUDA paths (fixed shapes, CUDA graphs, torch.compile, features on the device, one-pass
#      batches, JPEG decoding on the GPU) give the CPU's answers -> results/cuda_check.json; exits non-zero if not;
#   2. benchmarks/suite.py --device cuda: embedding, e2e and the gpu_paths section side by side with the plain paths, and
#      the targets beside the 2026-11-27 run -> results/gpu_paths/suite_cuda.{json,md};
#   3. benchmarks/derive_gpu.py: the T4 / P100 / A100 figures derived from this run -> results/gpu_paths/derived_gpus.json.
# Then: paste results/gpu_paths/suite_cuda.md into the README's GPU section (nbs/index.ipynb), and turn on by default
# the paths that the table shows faster with equal results (their settings: stage2.cuda_graphs, stage2.one_pass,
# stage2.gallery_on_device, stage1.gpu_decode). The whole suite (stage 1, stage 2, cascade, ITC) is
# `python benchmarks/suite.py --device cuda`, about ten minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/gpu_paths
python benchmarks/cuda_check.py
python benchmarks/suite.py --device cuda --only embed,e2e,gpu_paths --output-dir "$out" \
    --baseline benchmarks/results/suite_cuda_2026-11-27.json > /dev/null
python benchmarks/derive_gpu.py --from "$out/suite_cuda.json" --output "$out/derived_gpus.json" > /dev/null
cat "$out/suite_cuda.md"
