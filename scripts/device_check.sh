#!/usr/bin/env bash
# The GPU check: one command on a fresh CUDA machine with this repository, numbers back in JSON files
# even when a part fails or hangs (docs/benchmarks_gpu.md).
#   bash scripts/device_check.sh                      # writes $OUT/device_check/*.json (or runs/device_check/)
#   bash scripts/device_check.sh --dry-run            # the same parts on CPU at tiny sizes
#   bash scripts/device_check.sh --help               # --out, --budget, --parts, --force, --limit
# Each part runs in its own process under `timeout`; the parts' limits stay inside --budget (560 s by
# default), and this outer limit only catches a stuck orchestrator. PYTHON picks the interpreter
# (default python3, the one that holds torch on the lent machines); `.whl/*.whl` are installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
exec timeout -k 5 "${DEVICE_CHECK_OUTER_S:-590}" "$PY" scripts/device_check.py run "$@"
