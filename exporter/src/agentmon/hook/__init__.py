"""The hook: one Claude Code event from stdin, validated, redacted and written to SQLite.

``cli`` is the command (options, reading stdin, opening the database without following a
planted link); ``validate`` checks the event against ``schema.json``; ``oversize`` reads an
event too large to hold, in bounded memory; ``redact`` removes secrets (``shellargs``: those a
shell command line carries) and ``bounds`` cuts payloads and text to size; ``values`` reads
times, durations and ids out of an event; ``store`` writes the rows, ``usage`` the token and
error facts; ``spool`` keeps an event the database cannot take now. Kept free of imports: the
hook is a process per event and pays only for what it uses.
"""
