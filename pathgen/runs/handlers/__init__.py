"""One handler per pipeline stage: read inputs, do the work, return a Completion."""
