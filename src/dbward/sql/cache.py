"""Analyses cached by exact text and by statement shape, in bounded LRUs.

A repeated text costs one dict lookup. A new text of a known shape (other
literal values, as pgbench and ORMs send) costs a normalization (libpg_query
replaces every constant with ``$n``: about 3 microseconds) and reuses the
shape's facts. The shape is the normalized text rather than libpg_query's
fingerprint, because the fingerprint also ignores names policy depends on
(schemas: ``a.t`` and ``b.t`` share one; temporary tables; role lists).
A shape hit returns the very same :class:`Analysis`
(whose ``text`` is the first text of that shape seen), so that callers can
cache their own results per analysis. Only analyses whose facts do not depend
on literal values are shared between texts (see ``Analysis.cacheable``).
"""

from __future__ import annotations

from collections import OrderedDict

from pglast import parser

from dbward.sql.analyze import analyze
from dbward.sql.facts import Analysis


class AnalysisCache:
    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._by_text: OrderedDict[str, Analysis] = OrderedDict()
        self._by_shape: OrderedDict[str, Analysis] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_text)

    def analyze(self, text: str) -> Analysis:
        by_text = self._by_text
        found = by_text.get(text)
        if found is not None:
            by_text.move_to_end(text)
            self.hits += 1
            return found
        analysis = self._by_shape_of(text)
        by_text[text] = analysis
        if len(by_text) > self.capacity:
            by_text.popitem(last=False)
        return analysis

    def _by_shape_of(self, text: str) -> Analysis:
        try:
            key = parser.normalize(text)
        except parser.ParseError:
            self.misses += 1
            return analyze(text)
        by_shape = self._by_shape
        found = by_shape.get(key)
        if found is not None:
            by_shape.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        analysis = analyze(text, shape=key)
        if analysis.cacheable:
            by_shape[key] = analysis
            if len(by_shape) > self.capacity:
                by_shape.popitem(last=False)
        return analysis


shared_cache = AnalysisCache()
