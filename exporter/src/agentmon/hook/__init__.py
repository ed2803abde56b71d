"""The hook: one Claude Code event from stdin, validated, redacted and written to SQLite.

``main`` is the command; ``validate`` checks the event against ``schema.json``; ``redact``
removes secrets and bounds payloads; ``oversize`` reads an event too large to hold, in bounded
memory; ``store`` writes rows. Kept free of imports: the hook is a
process per event and pays only for what it uses.
"""
