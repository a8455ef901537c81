"""What training and evaluation share: the params layout, checkpoints, run directories,
metrics and progress."""
