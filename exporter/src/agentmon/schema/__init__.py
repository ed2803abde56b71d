"""The database: connections (``db``), versioned migrations with their up and down steps
(``migrations``), which steps run from one version to another (``plan``), verified backups
(``backup``), migrating a file (``migrate``) and the ``agentmon migrate`` command (``cli``).
``original`` holds the original hooks' tables (DDL and columns), ``statuses`` the row statuses
every part shares, ``labels`` the rule for label values the hook writes and the collector
reads, ``files`` the files SQLite keeps beside a database.
"""
