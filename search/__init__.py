"""Studies, workers, tracking and the CLI: the service around `spaces` and `trainers`."""
