"""Data side of the toolkit: raw NTU RGB+D / PKU-MMD readers, presets, splits and the HDF5 store."""

__version__ = "0.1.0"
