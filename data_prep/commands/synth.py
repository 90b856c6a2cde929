"""`hiclr-prep synth`: write the synthetic raw dataset (NTU `.skeleton` or PKU-MMD layout)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data_prep import synth
from hiclr.common.errors import UserError

EPILOG = """examples:
  hiclr-prep synth --out data/synth_raw                      # the demo's dataset (NTU format)
  hiclr-prep synth --out data/synth_raw --anomalies          # plus 0-body frames, noise bodies, a missing-list sample
  hiclr-prep synth --out data/synth_pku --format pkummd --phase 1
  hiclr-prep synth --out data/small --subjects 4 --classes 12 --repeats 1 --seed 3
  hiclr-prep synth --out data/field_raw --family field        # the second family: other actions and nuisance
"""


def register(sub: argparse._SubParsersAction) -> None:
    d = synth.SynthConfig()
    p = sub.add_parser(
        "synth",
        help="write synthetic raw skeleton data (the embedded default dataset)",
        description="Write a synthetic dataset in the raw NTU RGB+D .skeleton format (or the "
        "PKU-MMD layout): a kinematic 25-joint body, "
        f"{len(synth.ACTIONS)} action classes, several subjects, three cameras. "
        "The same seed always gives the same bytes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=("ntu", "pkummd"), default="ntu", help="file layout (default ntu)")
    p.add_argument(
        "--phase", type=int, choices=(1, 2), default=1, help="PKU-MMD phase whose split file names to write (default 1)"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--subjects", type=int, default=None, help=f"performers (default {d.subjects} for ntu, 6 for pkummd)"
    )
    p.add_argument("--cameras", type=int, default=d.cameras, help=f"cameras 1 to 3, NTU format (default {d.cameras})")
    p.add_argument("--setups", type=int, default=d.setups, help=f"setups, NTU format (default {d.setups})")
    p.add_argument(
        "--classes",
        type=int,
        default=None,
        help=f"action classes, the first N of the family's (default: all, {d.classes} in the default family)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"replications per subject and class (default {d.repeats} for ntu, 1 for pkummd)",
    )
    p.add_argument(
        "--family",
        choices=tuple(synth.FAMILIES),
        default="default",
        help="which synthetic family: 'default' (the demo's), or 'field' (other action programs, "
        "noisier recordings, 20 subjects x 1 repeat, 16 classes; NTU format only)",
    )
    p.add_argument(
        "--anomalies",
        action="store_true",
        help="inject the anomalies of real data (0-body frames, noise bodies, CRLF files, a "
        "missing-list sample; PKU: a label past the recording, an unlabelled video, a long segment)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pku = args.format == "pkummd"
    if pku and args.family != "default":
        raise UserError(
            f"--family {args.family} is written in the NTU format only; drop --format pkummd or use --family default"
        )
    given = {
        k: v
        for k, v in (
            ("subjects", args.subjects if args.subjects is not None else (6 if pku else None)),
            ("repeats", args.repeats if args.repeats is not None else (1 if pku else None)),
            ("classes", args.classes),
        )
        if v is not None
    }
    cfg = synth.SynthConfig.of_family(
        args.family, seed=args.seed, cameras=args.cameras, setups=args.setups, anomalies=args.anomalies, **given
    ).check()
    start = time.perf_counter()
    if pku:
        summary = synth.write_pkummd(args.out, cfg, phase=args.phase, progress=True)
        what = f"{summary['videos']} PKU-MMD videos ({summary['samples']} labelled segments)"
    else:
        summary = synth.write_ntu(args.out, cfg, progress=True)
        what = f"{summary['files']} .skeleton files ({summary['frames']} frames)"
    print(f"synth: wrote {what}, {cfg.classes} classes, to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
