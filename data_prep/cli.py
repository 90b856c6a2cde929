"""`hiclr-prep`: turn raw skeleton files into one HDF5 file per dataset."""

from __future__ import annotations

from hiclr.common.command_line import run_cli

# (subcommand module, in the order `--help` lists them); each module defines
# `register(subparsers)` which adds its parser(s) and sets `func=handler(args) -> int`.
COMMANDS = ["ntu", "pkummd", "importer", "synth", "inspect"]

EPILOG = """examples:
  hiclr-prep synth --out data/synth_raw
  hiclr-prep ntu60 --raw data/synth_raw --out data/synth.h5
  hiclr-prep ntu60 --raw nturgb+d_skeletons/ --out data/ntu60.h5 --workers 8
  hiclr-prep pkummd --phase 2 --skeletons PKU/skeleton --labels PKU/label --splits PKU/split --out data/pku2.h5
  hiclr-prep verify data/ntu60.h5
"""


def main(argv: list[str] | None = None) -> int:
    return run_cli("hiclr-prep", __doc__, "data_prep.commands", COMMANDS, EPILOG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
