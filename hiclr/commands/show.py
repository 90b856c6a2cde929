"""`hiclr show`: pictures of clips (a strip of frames, an animated GIF) and of what a policy's views do to them."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  hiclr show --data demo_out/synth.h5 --index 0 --out pictures            # strip PNG + GIF of sample 0
  hiclr show --data demo_out/synth.h5 --class handshake --n 2 --out pictures
  hiclr show --data demo_out/synth.h5 --index 0 --views --out pictures    # + the growing policy's views
  hiclr show --data demo_out/synth.h5 --index 0 --views --policy configs/augment/strong_all.yaml --out pictures
  hiclr show --data demo_out/synth.h5 --index 0 --stream motion --out pictures
  hiclr show --data raw/S001C001P001R001A001.skeleton --out pictures      # straight from a raw file
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="draw clips: frame strip (PNG), animation (GIF), augmentation views",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="a prepared store (.h5, its frame50 view) or a raw NTU .skeleton file",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="sample index in the store (default 0)")
    which.add_argument("--name", help="sample name, e.g. S001C001P001R001A001")
    which.add_argument(
        "--class",
        dest="class_",
        metavar="CLASS",
        help="a class, by its 0-based label or its name (a unique prefix will do)",
    )
    p.add_argument(
        "--n", type=int, default=1, help="clips to draw: from --index / --name on, or of --class (default 1)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures")
    p.add_argument(
        "--views",
        action="store_true",
        help="also draw the clip through the growing policy, one column per stage, weakest to strongest",
    )
    p.add_argument(
        "--policy", metavar="FILE", help="augmentation policy of --views (default configs/augment/hiclr_default.yaml)"
    )
    p.add_argument(
        "--stream",
        default="joint",
        choices=("joint", "motion", "bone"),
        help="draw the input of an encoder of this stream (default joint)",
    )
    p.add_argument("--frames", type=int, default=8, help="frames in the strip (default 8; --views: at most 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the views' random draws")
    p.add_argument("--no-gif", action="store_true", help="skip the animated GIF")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from hiclr.show import show

    for path in show(
        args.data,
        args.out,
        index=args.index,
        name=args.name,
        class_=args.class_,
        n=args.n,
        views=args.views,
        policy=args.policy,
        stream=args.stream,
        frames=args.frames,
        seed=args.seed,
        gif=not args.no_gif,
    ):
        print(path)
    return 0
