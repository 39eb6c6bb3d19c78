"""Masking of personal data and secrets in result rows, on the wire. Pure.

Detectors find PII by content (:mod:`.detectors`, :mod:`.scanner`) and by
column name (:mod:`.columns`); :mod:`.strategies` turns a value into its masked
form; :mod:`.values` keeps the masked value valid for its column type, in text
and binary formats; :mod:`.plan` decides per result column at RowDescription,
and :mod:`.rows` rewrites only the rows that need it.
"""
