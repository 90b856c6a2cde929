"""The subcommands of `hiclr-prep`: each module defines `register(subparsers)` and its `run`."""
