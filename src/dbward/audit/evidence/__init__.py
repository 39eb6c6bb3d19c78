"""Compliance evidence: what the trail shows for a period, mapped to a framework's controls."""
