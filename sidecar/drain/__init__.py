"""Drain-end sources: each watches one kind of evidence that the app has finished and tells the
shutdown sequence; none decides the outcome itself."""
