"""``agentmon prune``: retention for the hook database (see ``agentmon.prune.core``)."""
