"""The ingest service (``agentmon ingest``): the database's one writer behind a local socket."""
