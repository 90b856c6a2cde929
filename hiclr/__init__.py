"""HiCLR: hierarchical consistent contrastive learning for skeleton-based action recognition."""

__version__ = "0.1.0"
