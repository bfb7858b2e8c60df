"""What the sidecar tells the outside world about a shutdown: metrics, the final report, spans."""
