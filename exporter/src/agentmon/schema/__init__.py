"""The database: connections (``db``), versioned migrations with their up and down steps
(``migrations``), verified backups (``backup``), migrating a file (``migrate``) and the
``agentmon migrate`` command (``cli``). ``statuses`` names the row statuses every part shares,
``files`` the files SQLite keeps beside a database.
"""
