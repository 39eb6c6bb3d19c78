"""Approvals: held statements and just-in-time access, decided by people, recorded."""
