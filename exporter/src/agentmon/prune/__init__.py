"""``agentmon prune``: retention for the hook database. ``core`` removes old finished rows in
short transactions and keeps their numbers, ``space`` gives the freed pages back to the
filesystem, ``cli`` is the command line.
"""
