"""Evaluation protocols: linear probe, kNN, semi-supervised subsets, fine-tune, stream ensemble.

Each `run_*` function takes a resolved config and an encoder (checkpoint path or module), writes a
run folder (report.json, report.md, PNGs, logits.npz) and returns the protocol's report entry.
"""
