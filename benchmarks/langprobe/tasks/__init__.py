"""One module per task; each defines TASK."""
