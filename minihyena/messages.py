"""Small helpers for the wording of messages shown to users."""
from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 character"``, ``"2 characters"``; ``many`` for irregular plurals. Thousands are separated."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
