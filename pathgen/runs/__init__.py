"""Dataset-build runs: the work queue, the stage graph, workers and progress."""
