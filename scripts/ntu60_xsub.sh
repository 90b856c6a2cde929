#!/usr/bin/env bash
# The whole NTU60 cross-subject pipeline on real data, three streams, as in the paper:
#   prep -> pre-train (joint, bone, motion) -> linear probe, kNN, semi 1 %/10 %, fine-tune -> ensemble.
# Usage: scripts/ntu60_xsub.sh /path/to/nturgb+d_skeletons [DEVICE]
# Expect about 3 x (pre-training) on one GPU; see docs/benchmarks.md.
# PRETRAIN_ARGS / EVAL_ARGS (environment) are appended to every pre-training / evaluation command,
# e.g. PRETRAIN_ARGS="--epochs 1 --set model.width=4" for a smoke run (tests/scripts/test_ntu60_xsub.py).
set -euo pipefail
RAW=${1:?usage: scripts/ntu60_xsub.sh RAW_SKELETON_DIR [DEVICE]}
DEVICE=${2:-cuda}
DATA=${DATA:-data/ntu60.h5}
OUT=${OUT:-checkpoints}

[ -f "$DATA" ] || hiclr-prep ntu60 --raw "$RAW" --out "$DATA" --workers "$(nproc)"
hiclr-prep verify "$DATA"

for STREAM in joint bone motion; do
    RUN="$OUT/ntu60_xsub_pretrain_${STREAM}"          # run.name of the pre-training config
    if [ ! -f "$RUN/encoder.pt" ]; then
        RESUME=""; [ -f "$RUN/last.pt" ] && RESUME="--resume"
        hiclr pretrain --config "configs/ntu60/xsub/pretrain_${STREAM}.yaml" --data "$DATA" \
            --out "$OUT" --device "$DEVICE" $RESUME ${PRETRAIN_ARGS:-}
    fi
    hiclr linear --config "configs/ntu60/xsub/linear_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/linear" --set engine.device="$DEVICE" ${EVAL_ARGS:-}
    hiclr knn --encoder "$RUN/encoder.pt" --data "$DATA" --protocol xsub --set data.stream="$STREAM" --out "$RUN/knn" ${EVAL_ARGS:-}
    hiclr semi --config "configs/ntu60/xsub/semi_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/semi" --set engine.device="$DEVICE" ${EVAL_ARGS:-}
    hiclr finetune --config "configs/ntu60/xsub/finetune_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/finetune" --set engine.device="$DEVICE" ${EVAL_ARGS:-}
done

hiclr ensemble "$OUT/ntu60_xsub_pretrain_joint/linear" "$OUT/ntu60_xsub_pretrain_bone/linear" "$OUT/ntu60_xsub_pretrain_motion/linear" \
    --out "$OUT/ntu60_xsub_ensemble_linear"
hiclr report "$OUT"/ntu60_xsub_pretrain_*/linear "$OUT"/ntu60_xsub_pretrain_*/knn "$OUT"/ntu60_xsub_pretrain_*/semi "$OUT"/ntu60_xsub_pretrain_*/finetune "$OUT/ntu60_xsub_ensemble_linear"
