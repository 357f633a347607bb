"""The parent side of a run: the plan (validated once), serve, the job's logging, the run's record."""
