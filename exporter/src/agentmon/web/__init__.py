"""HTTP for ``agentmon serve``, one job per module:

- ``config``: the exporter-toolkit web config file (TLS, basic auth users, headers), checked;
- ``reload``: re-reads that file when it changes and hands the server the new one;
- ``address``: ``--web.listen-address`` parsed into what the server binds;
- ``server``: the asyncio server: sockets, connection table, deadlines, serving each request;
- ``stream``: a connection's bytes, plain or TLS over memory BIOs, and the handshake turns;
- ``request``: a connection's bytes until a head has ended, then httptools' callbacks, the
  request a head makes and what is refused, and why;
- ``auth``: basic auth and bearer token checks, bcrypt results cached under an HMAC;
- ``response``: statuses, content types, headers and the format and gzip negotiation;
- ``exposition``: the rendered bytes the refresh thread stores and a scrape writes.
"""
