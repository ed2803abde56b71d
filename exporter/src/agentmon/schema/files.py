"""The files SQLite keeps beside a database (no imports: the hook reads this on every event)."""

SIDE_FILES = ("-wal", "-shm", "-journal")
