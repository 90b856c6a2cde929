#!/usr/bin/env bash
# The whole NTU60 cross-subject pipeline on real data, three streams, as in the paper:
#   prep -> pre-train (joint, bone, motion) -> linear probe, kNN, semi 1 %/10 %, fine-tune -> ensemble.
# Usage: scripts/ntu60_xsub.sh /path/to/nturgb+d_skeletons [DEVICE]
# Expect about 3 x (pre-training) on one GPU; see the README's throughput table.
set -euo pipefail
RAW=${1:?usage: scripts/ntu60_xsub.sh RAW_SKELETON_DIR [DEVICE]}
DEVICE=${2:-cuda}
DATA=${DATA:-data/ntu60.h5}
OUT=${OUT:-checkpoints}

[ -f "$DATA" ] || hiclr-prep ntu60 --raw "$RAW" --out "$DATA" --workers "$(nproc)"
hiclr-prep verify "$DATA"

for STREAM in joint bone motion; do
    RUN="$OUT/ntu60_xsub_${STREAM}"
    hiclr pretrain --config "configs/ntu60/xsub/pretrain_${STREAM}.yaml" --data "$DATA" \
        --out "$RUN" --device "$DEVICE" --resume
    hiclr linear --config "configs/ntu60/xsub/linear_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/linear" --set engine.device="$DEVICE"
    hiclr knn --encoder "$RUN/encoder.pt" --data "$DATA" --protocol xsub --out "$RUN/knn"
    hiclr semi --config "configs/ntu60/xsub/semi_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/semi" --set engine.device="$DEVICE"
    hiclr finetune --config "configs/ntu60/xsub/finetune_${STREAM}.yaml" --data "$DATA" \
        --encoder "$RUN/encoder.pt" --out "$RUN/finetune" --set engine.device="$DEVICE"
done

hiclr ensemble "$OUT/ntu60_xsub_joint/linear" "$OUT/ntu60_xsub_bone/linear" "$OUT/ntu60_xsub_motion/linear" \
    --out "$OUT/ntu60_xsub_ensemble_linear"
hiclr report "$OUT"/ntu60_xsub_*/linear "$OUT"/ntu60_xsub_*/knn "$OUT"/ntu60_xsub_*/finetune "$OUT/ntu60_xsub_ensemble_linear"
