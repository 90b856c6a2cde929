"""What both packages share: errors, atomic writes, progress and the command-line driver."""
