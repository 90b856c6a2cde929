"""`hiclr bench train` at a size that takes seconds: the tests of its table and of the transformer row."""

import argparse


def run_tiny_bench_train(*extra: str) -> dict:
    """`bench.run` of `hiclr bench train --size demo` on the CPU at width 2, batch 8, queue 32,
    16 samples, one timed step without warm-up, one thread; `extra` arguments follow."""
    from hiclr.bench import train as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = ["--device", "cpu", "--size", "demo", "--width", "2", "--batch", "8", "--queue", "32"]
    args += ["--samples", "16", "--steps", "1", "--warmup", "0", "--threads", "1", *extra]
    return bench.run(parser.parse_args(args))
