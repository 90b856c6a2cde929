#!/usr/bin/env bash
# The GPU check (issue 11): one command, under 8 minutes, one JSON line on stdout.
#   bash scripts/device_check.sh
# CUDA tests; `hiclr bench train --device cuda` at full size, bf16 / fp32 x fused / separate x
# compile off / on (and the transformer beside, --encoder dsta); one epoch of pre-training on synthetic data (bf16, device-resident); a 1-process
# torchrun run with NCCL. Each part has its own time limit (scripts/device_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 470 "${PYTHON:-python3}" scripts/device_check.py
