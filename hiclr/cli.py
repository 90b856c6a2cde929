"""`hiclr`: pre-train, evaluate, report and benchmark skeleton encoders."""

from __future__ import annotations

from hiclr.common.command_line import run_cli

# Each module of hiclr.commands defines `register(subparsers)`.
COMMANDS = ["pretrain", "embed", "evaluate", "report", "demo", "bench", "sweep", "show"]

EPILOG = """examples:
  hiclr demo --out demo_out
  hiclr pretrain --config configs/ntu60/xsub/pretrain_joint.yaml --data data/ntu60.h5
  hiclr pretrain --config configs/tiny/pretrain.yaml --data data/synth.h5 --set optim.lr=0.05
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr knn --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5 --protocol xsub
  hiclr ensemble RUN_J RUN_B RUN_M
  hiclr sweep configs/demo/ablation.yaml --data demo_out/synth.h5 --out ablation_out
  hiclr bench aug --json
"""


def main(argv: list[str] | None = None) -> int:
    return run_cli("hiclr", __doc__, "hiclr.commands", COMMANDS, EPILOG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
