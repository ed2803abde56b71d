"""The incremental collector behind ``agentmon serve``: ``queries`` (the SQL), ``state`` (the
numbers kept in memory), ``labels`` (bounded label values), ``checkpoint`` (saved state) and
``collector`` (reads the database into the state and renders metric families).
"""
