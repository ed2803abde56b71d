"""A restored backup, then as many deletes as happened since the backup, is noticed.

The removal counter of migration step 5 is a number: a backup restored over the live file
takes it back, and as many deletes as happened since the backup bring it to the value the
exporter last saw, while neither the witness rows nor the highest sequence number change. The
random token every removal writes beside the counter (step "removal_token") tells the two
histories apart. Found by ``test_truth``'s machine (its rule ``restore_then_as_many_removals``
makes such sequences).
"""

from __future__ import annotations

from test_truth import TruthMachine


def test_a_restore_then_as_many_deletes_as_since_the_backup_is_noticed() -> None:
    machine = TruthMachine()
    try:
        machine.start(legacy=False, batch=1, cap=100)
        for session, status in (("a", "active"), ("b", "completed"), ("c", "active")):
            machine.conn.execute("INSERT INTO sessions (session_id, status) VALUES (?, ?)",
                                 (session, status))
        machine.refresh()
        machine.take_backup()
        machine.delete_session(pick=0)
        machine.refresh()
        machine.restore_backup(pick=0)
        machine.delete_session(pick=1)  # the counter is back at the value last seen
        machine.refresh()  # exported == SQL, else AssertionError
    finally:
        machine.teardown()
