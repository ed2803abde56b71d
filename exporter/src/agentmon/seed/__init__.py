"""``agentmon seed``: realistic synthetic history, for demos, tests and benchmarks."""
