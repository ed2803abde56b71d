"""``agentmon seed``: fast, realistic synthetic history for demos, tests and benchmarks.

``options`` (what is asked for and reported), ``pools`` (the synthetic world and the values
drawn from it once per seed), ``plan`` (the work cut into shards of whole sessions with known
ids and sequence numbers), ``generate`` (one shard's rows, and a worker's shard as an in-memory
database), ``load`` (into the target file, in one transaction, indexes after) and ``cli`` (the
command line). The same ``--seed`` and ``--end`` give the same rows, whatever ``--jobs``.
"""
