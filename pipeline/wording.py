"""Counts said as a reader says them: "1 attempt", "3 attempts" (never "attempt(s)")."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
