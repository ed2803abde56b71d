"""agentmon: hook logger, schema migrations and Prometheus exporter for agent workflow logs."""

__version__ = "0.1.0"
