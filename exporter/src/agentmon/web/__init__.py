"""HTTP for ``agentmon serve``: the exporter-toolkit web config (``config``) and the server
that authenticates requests and writes the rendered exposition (``server``).
"""
