"""Small scanners shared by the path languages (pipeline ``Get`` paths, transform JSONPath)."""

from __future__ import annotations


def closing_bracket(text: str, start: int) -> int:
    """The index of the ``]`` closing the ``[`` at ``start``, skipping quoted strings; -1 if unclosed."""
    quote = None
    for pos in range(start + 1, len(text)):
        char = text[pos]
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "]":
            return pos
    return -1
