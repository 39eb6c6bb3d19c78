"""Times in API parameters (see :func:`dbward.times.parse_when`); a bad one is a 422."""

from fastapi import HTTPException

from dbward.times import parse_when


def parse_time(text: str | None) -> float | None:
    try:
        return parse_when(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
