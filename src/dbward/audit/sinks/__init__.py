"""Copies of the trail sent elsewhere as it is written: syslog, an HTTP webhook, stdout.

Each sink has a spool on disk (:mod:`.spool`): records are appended to it when
they are stored, and a thread per sink (:mod:`.dispatch`) delivers them,
retrying with a growing pause while the receiver is unreachable. Delivery is
at least once: every record carries its chain, seq and hash, so a receiver can
drop a repeat.
"""
