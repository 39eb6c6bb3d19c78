"""Golden fixtures for the content detectors (:mod:`dbward.masking.detectors`).

Every YAML file under ``tests/fixtures/masking/`` holds a list of cases::

    - text: "call +1 212 555 0143 now"      # scanned as UTF-8 bytes
      expect: [{phone: "+1 212 555 0143"}]  # entity: exact matched text, in order
      why: one short line saying what this case checks
      known_gap: "what the code gets wrong"  # optional

``expect: []`` is a look-alike that must not be detected. The detections of a
text must equal ``expect`` exactly: same entities, same substrings, same
order, nothing more. A case with ``known_gap`` states what *should* happen and
the current code does not; it runs as a strict xfail, so fixing the code makes
it fail until the ``known_gap`` line is removed.

Decisions the fixtures record (see each case's ``why``): a bare digit run
without ``+`` or separators is never a phone number (it cannot be told from an
id); ``user@localhost`` and other domains without a TLD are not addresses;
four in-range octets are an IPv4 address even when they could be a version
(``1.2.3.4``), while ``v1.2.3.4`` and five-part strings are not; a 40-character
base64 string is an AWS secret only next to a key word.

``test_detection_metrics`` computes recall and precision over every case
(known gaps included) and prints them in the terminal summary.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dbward.masking.detectors import DETECTORS
from dbward.masking.entities import Entity
from dbward.masking.scanner import Scanner
from tests.golden import case_id, key_problems, load_cases
from tests.unit.masking import support

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "masking"
KEYS = frozenset({"text", "expect", "why", "known_gap"})
REQUIRED = frozenset({"text", "expect", "why"})
ENTITIES = frozenset(e.value for e in Entity)
MIN_CASES = 250

Detection = tuple[str, str]


def _all_cases() -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (path.stem, index, case)
        for path in sorted(FIXTURES.glob("*.yaml"))
        for index, case in enumerate(load_cases(path))
    ]


def _params() -> list[Any]:
    params = []
    for stem, index, case in _all_cases():
        gap = case.get("known_gap") if isinstance(case, dict) else None
        marks = [pytest.mark.xfail(strict=True, reason=str(gap))] if gap else []
        text = case.get("text") if isinstance(case, dict) else case
        params.append(pytest.param(case, id=case_id(stem, index, text), marks=marks))
    return params


CASES = _params()


def expected(case: dict[str, Any]) -> list[Detection]:
    return [(entity, match) for item in case["expect"] for entity, match in item.items()]


def detect(scanner: Scanner, text: str) -> list[Detection]:
    data = text.encode("utf-8")
    return [(h.entity.value, data[h.start : h.end].decode("utf-8")) for h in scanner.find(data)]


def _problems(case: object) -> list[str]:
    out = key_problems(case, REQUIRED, KEYS)
    if not isinstance(case, dict):
        return out
    text = case.get("text")
    if not isinstance(text, str):
        return [*out, "text must be a string"]
    expect = case.get("expect")
    if not isinstance(expect, list):
        return [*out, "expect must be a list (empty for a look-alike)"]
    pos = 0
    for item in expect:
        if not isinstance(item, dict) or len(item) != 1:
            out.append(f"each expected detection is one 'entity: match' pair, not {item!r}")
            continue
        ((entity, match),) = item.items()
        if entity not in ENTITIES:
            out.append(f"unknown entity {entity!r}")
        if not isinstance(match, str) or not match:
            out.append(f"match must be a non-empty string, not {match!r}")
            continue
        found = text.find(match, pos)
        if found < 0:
            out.append(f"{match!r} does not occur in the text (after the previous match)")
        else:
            pos = found + len(match)
    if not isinstance(case.get("why"), str) or not case["why"].strip():
        out.append("why must be a non-empty line")
    if "known_gap" in case and (
        not isinstance(case["known_gap"], str) or not case["known_gap"].strip()
    ):
        out.append("known_gap must say what the code gets wrong")
    return out


def test_fixture_files_are_well_formed() -> None:
    problems = []
    for stem, index, case in _all_cases():
        problems += [f"{stem}[{index}]: {p}" for p in _problems(case)]
    assert not problems, "\n".join(problems)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} golden cases, want {MIN_CASES}"


def test_texts_are_unique() -> None:
    texts = Counter(case["text"] for _, _, case in _all_cases())
    assert not [t for t, n in texts.items() if n > 1], "a text appears in two cases"


def test_every_detector_has_a_passing_positive_case(scanner: Scanner) -> None:
    """Each detector (not only each entity) is exercised by a case it gets right."""
    covered: set[str] = set()
    for _, _, case in _all_cases():
        if "known_gap" in case or not case["expect"]:
            continue
        data = case["text"].encode()
        covered |= {h.detector for h in scanner.find(data)}
    missing = {d.name for d in DETECTORS} - covered
    assert not missing, f"detectors without a passing positive golden case: {sorted(missing)}"


def test_every_entity_with_detectors_has_look_alikes() -> None:
    """Each file mixes positives and look-alikes that must not be detected."""
    for path in sorted(FIXTURES.glob("*.yaml")):
        cases = load_cases(path)
        if path.stem in ("lookalikes",):
            continue
        assert any(c["expect"] for c in cases), f"{path.name} has no positive case"
        if path.stem != "mixed":
            assert any(not c["expect"] for c in cases), f"{path.name} has no look-alike"


@pytest.mark.parametrize("case", CASES)
def test_golden_detection(case: dict[str, Any], scanner: Scanner) -> None:
    assert not _problems(case), _problems(case)
    got = detect(scanner, case["text"])
    want = expected(case)
    assert got == want, f"{case['why']}: want {want}, got {got}"


def test_prefilter_never_hides_a_validated_match(scanner: Scanner) -> None:
    """Hyperscan's prefilter may over-match but must name every detector that finds a value."""
    misses = []
    for _, _, case in _all_cases():
        data = case["text"].encode()
        candidates = set(scanner.candidates(data))
        for index, detector in enumerate(scanner.detectors):
            for match in detector.pattern.finditer(data):
                text = match.group("value").decode("utf-8", "replace")
                valid = detector.validate is None or detector.validate(text)
                if valid and index not in candidates:
                    misses.append(f"{detector.name}: {text!r} in {case['text']!r}")
    assert not misses, "\n".join(misses)


def _metrics(scanner: Scanner) -> tuple[dict[str, Counter[str]], list[str]]:
    """Per entity: true positives, false positives, false negatives over every case."""
    counts: dict[str, Counter[str]] = {}
    gaps = []
    for stem, index, case in _all_cases():
        got = Counter(detect(scanner, case["text"]))
        want = Counter(expected(case))
        for (entity, _), n in (got & want).items():
            counts.setdefault(entity, Counter())["tp"] += n
        for (entity, _), n in (got - want).items():
            counts.setdefault(entity, Counter())["fp"] += n
        for (entity, _), n in (want - got).items():
            counts.setdefault(entity, Counter())["fn"] += n
        if "known_gap" in case:
            gaps.append(f"{stem}[{index}]")
    return counts, gaps


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 1.0


def test_detection_metrics(scanner: Scanner, request: pytest.FixtureRequest) -> None:
    counts, gaps = _metrics(scanner)
    total = sum(counts.values(), Counter())
    recall = _ratio(total["tp"], total["tp"] + total["fn"])
    precision = _ratio(total["tp"], total["tp"] + total["fp"])
    cases = len(CASES)
    positives = sum(1 for _, _, c in _all_cases() if c["expect"])
    lines = [
        f"{cases} cases ({positives} with PII, {cases - positives} look-alikes), "
        f"{len(gaps)} known gaps",
        f"overall: recall {recall:.3f}  precision {precision:.3f}  "
        f"(tp {total['tp']}, fp {total['fp']}, fn {total['fn']})",
    ]
    for entity in sorted(counts):
        c = counts[entity]
        lines.append(
            f"  {entity:<12} recall {_ratio(c['tp'], c['tp'] + c['fn']):.3f}  "
            f"precision {_ratio(c['tp'], c['tp'] + c['fp']):.3f}  "
            f"(tp {c['tp']}, fp {c['fp']}, fn {c['fn']})"
        )
    report = "\n".join(lines)
    request.config.stash[support.METRICS] = report
    print(report)  # also visible with -s
    # Every miss and every false detection is a documented known gap: the
    # golden cases themselves enforce that; here only a floor against regressions.
    assert recall >= 0.85, report
    assert precision >= 0.85, report
