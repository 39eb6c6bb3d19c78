"""Fixtures for the masking tests, and the detection report in the terminal summary."""

from __future__ import annotations

import pytest

from dbward.masking.scanner import Scanner
from dbward.masking.strategies import Pseudonymizer
from dbward.masking.values import ValueMasker
from tests.unit.masking import support


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    return support.scanner()


@pytest.fixture
def pseudonyms() -> Pseudonymizer:
    return Pseudonymizer(support.KEY)


@pytest.fixture
def masker() -> ValueMasker:
    """Default strategies, nothing unmasked."""
    return support.masker()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(support.METRICS, None)
    if report:
        terminalreporter.write_sep("-", "masking detectors: golden fixture recall/precision")
        terminalreporter.write_line(report)
