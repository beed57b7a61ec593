"""Training GAL-Rec: the run, its batches, the loop, checkpoints and run directory."""
