"""``agentmon serve``: ``cli`` parses the command line, runs the refresh thread over the
collector (``agentmon.collector``) and serves its cached exposition (``agentmon.web``);
``formats`` writes the text format and OpenMetrics from one collection."""
