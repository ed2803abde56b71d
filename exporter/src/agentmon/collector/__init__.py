"""The incremental collector behind ``agentmon serve``: ``queries`` (the SQL), ``reading`` (SQL
in, changes to the state out, and when to rebuild), ``state`` (the numbers kept in memory),
``labels`` (bounded label values), ``checkpoint`` (the saved state's file) and ``policy`` (when
it is read and written), ``render`` (a pure step from state to metric families) and
``collector`` (the prometheus_client collector: connection, faults, snapshots).
"""
