"""Counts in messages: "1 story", "2 stories", never "1 stories"."""

_PLURALS = {"story": "stories"}


def count(n: int, noun: str, plural: "str | None" = None) -> str:
    """'1 story', '0 stories', '3 tokens': the noun agrees with n. Irregular plurals
    come from `plural` or the table above; others add an s."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural or _PLURALS.get(noun, noun + 's')}"
