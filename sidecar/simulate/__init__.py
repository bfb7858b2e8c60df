"""`shutdown-sidecar simulate`: a rolling update rehearsed on one machine, with real processes on
loopback, to answer "will this app drop requests or be SIGKILLed when Kubernetes replaces it?"."""
