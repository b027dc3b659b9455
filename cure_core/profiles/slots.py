"""A prompt slot by slot, and where each item's text lands in the written prompt.

Same-length corruptions (``cure_core.text_corruptions``) swap the items of some slots and must
know each item's character span in the prompt, whatever the profile's template does around it
(TALLRec lists liked entries before disliked ones; E2URec writes the history as a Python list,
whose quotes depend on the titles). The span is found by writing the prompt once with every
item's text wrapped in markers and then removing them: the template treats the marked text
exactly as the plain text (the markers are printable and hold no quotes), so the prompt
without markers is checked to be the prompt itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from cure_core.errors import CureError

# ⦃<slot>⦄ before an item's text and ⦅ after it: printable (Python's repr keeps them as they
# are), quote-free, and not in any title.
_OPEN, _SLOT_END, _CLOSE = "\u2983", "\u2984", "\u2985"
_SPACES = " \n\t"
_MARKED = re.compile(f"{_OPEN}(\\d+){_SLOT_END}(.*?){_CLOSE}", re.DOTALL)


@dataclass(frozen=True)
class Slots:
    """What one prompt writes: the user and, per slot, an item.

    Slots ``0 … K−1`` are the history entries in time order, each with its like and stars;
    slot ``K`` is the target. Swapping a slot's item keeps its like and stars.
    """

    user: int
    history: tuple[int, ...]
    likes: tuple[bool, ...]
    stars: tuple[int, ...]
    target: int
    user_known: bool = True

    @property
    def items(self) -> tuple[int, ...]:
        """Item code per slot (history, then the target)."""
        return (*self.history, self.target)

    @property
    def target_slot(self) -> int:
        return len(self.history)

    def with_items(self, items: dict[int, int]) -> Slots:
        """These slots with the items of slots ``items`` (slot -> item code) swapped."""
        history = tuple(items.get(slot, item) for slot, item in enumerate(self.history))
        return replace(self, history=history, target=items.get(self.target_slot, self.target))


def mark(text: str, slot: int) -> str:
    """``text`` wrapped in the markers of ``slot``."""
    return f"{_OPEN}{slot}{_SLOT_END}{text}{_CLOSE}"


@dataclass(frozen=True)
class WrittenPrompt:
    """A prompt and the character spans ``(start, end)`` of the items it writes, in text order,
    each with its slot (a slot written twice has two spans; a slot not written, none)."""

    text: str
    spans: tuple[tuple[int, int, int], ...]  # (slot, start, end)

    @classmethod
    def from_marked(cls, marked: str, plain: str, where: str) -> WrittenPrompt:
        """Read the spans off ``marked`` and check that removing the markers gives ``plain``."""
        pieces: list[str] = []
        spans: list[tuple[int, int, int]] = []
        at = length = 0
        for match in _MARKED.finditer(marked):
            pieces.append(marked[at : match.start()])
            length += match.start() - at
            inner = match[2]
            spans.append((int(match[1]), length, length + len(inner)))
            pieces.append(inner)
            length += len(inner)
            at = match.end()
        pieces.append(marked[at:])
        text = "".join(pieces)
        if text != plain or any(m in text for m in (_OPEN, _SLOT_END, _CLOSE)):
            raise CureError(
                f"{where} changes the item text it is given (or splits it), so the titles cannot be located "
                "in the prompt for a same-length corruption",
                "write each item as given ({{ item }} in [history] entry, {{ target }} in the template) "
                "without filters that change it",
            )
        return cls(text, tuple(spans))

    def slot_spans(self, slot: int) -> list[tuple[int, int]]:
        return [(start, end) for s, start, end in self.spans if s == slot]

    def outside(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """The slots in text order and the text between their spans: what a pair of prompts
        differing only inside the items' spans has in common."""
        pieces, at = [], 0
        for _, start, end in self.spans:
            pieces.append(self.text[at:start])
            at = end
        pieces.append(self.text[at:])
        return tuple(s for s, _, _ in self.spans), tuple(pieces)

    def context(self, start: int, end: int, width: int) -> tuple[str, str]:
        """The text either side of ``[start, end)`` that can share a token with it: back to the
        last whitespace before it and on to the first after it (tokenizers split words there),
        at most ``width`` characters and never into the neighbouring items (those may be
        swapped too)."""
        left = self.text[max([0, start - width] + [e for _, _, e in self.spans if e <= start]) : start]
        right = self.text[end : min([end + width] + [s for _, s, _ in self.spans if s >= end])]
        cut = max((left.rfind(c) for c in _SPACES), default=-1)
        ends = [i for i in (right.find(c) for c in _SPACES) if i >= 0]
        return left[max(cut, 0) :], right[: min(ends) + 1] if ends else right
