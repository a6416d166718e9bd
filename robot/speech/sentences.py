"""Cuts a stream of token texts into pieces worth speaking, as soon as each one is
complete.

    s = SentenceSplitter(max_chars=240)
    for text in token_texts:
        for piece in s.feed(text):
            speak(piece)
    for piece in s.flush():      # end of the story
        speak(piece)

Joined together the pieces are exactly the text fed in: whitespace between sentences
starts the next piece. A piece ends after `.` `!` `?` `...` (with any closing quotes or
brackets), at a paragraph break, or at the end of the story. Whether an end mark ends
the sentence is only known from the next word ("Mr. Smith", "3.5", "Wait... what?",
"\"Hi!\" she said"), so a sentence is handed out when the first character of the next
one arrives: one token later, never more.
"""
from typing import List, Tuple


ENDS = ".!?\u2026"                           # \u2026 is the one-character ellipsis
CLOSERS = "\"'\u201d\u2019)]"
# Words that end with a full stop without ending the sentence ("Mr. Smith").
ABBREVIATIONS = frozenset("mr mrs ms dr prof st mt jr sr capt lt sgt rev col gen".split())
CLAUSE_MARKS = ",;:"


def speakable(piece: str) -> bool:
    """True when a piece has something to say (not only spaces and punctuation)."""
    return any(c.isalnum() for c in piece)


class SentenceSplitter:
    """Incremental sentence splitter; one per story (or reset() between stories).

    max_chars: a run this long without a sentence end is cut at its last comma (or
    space) so that speech never waits long for a full stop.
    first_clause: the story's first piece already ends at a comma ("Once upon a time,"),
    so the robot starts talking while the model is still writing the first sentence.
    """

    def __init__(self, max_chars: int = 240, first_clause: bool = False) -> None:
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self.max_chars = max_chars
        self.first_clause = first_clause
        self.reset()

    def reset(self) -> None:
        self._buf = ""
        self._pos = 0          # scanned up to here; _buf[:_pos] belongs to the current piece
        self._quote = False    # inside an open double quote
        self._pieces = 0

    def feed(self, text: str) -> List[str]:
        if not text:
            return []
        self._buf += text
        return self._scan()

    def flush(self) -> List[str]:
        """The rest of the story as the last piece (if any)."""
        rest, self._buf, self._pos, self._quote = self._buf, "", 0, False
        return [rest] if rest else []

    # -- scanning --------------------------------------------------------------

    def _scan(self) -> List[str]:
        out: List[str] = []
        buf = self._buf
        i = self._pos
        while i < len(buf):
            c = buf[i]
            cut = None
            if c in ENDS:
                verdict, j, quote = self._end_mark(buf, i)
                if verdict == "wait":
                    break
                if verdict == "cut":
                    cut = j
                self._quote = quote
                i = j
            elif c == "\n":
                if speakable(buf[:i]):
                    cut = i
                self._quote = False    # a paragraph break closes any dialogue left open
                i += 1
            else:
                if c == "\"":
                    self._quote = not self._quote
                elif c == "\u201c":
                    self._quote = True
                elif c == "\u201d":
                    self._quote = False
                elif c in CLAUSE_MARKS and self.first_clause and self._pieces == 0:
                    if i + 1 >= len(buf):
                        break
                    if buf[i + 1].isspace() and not self._quote and len(buf[:i].split()) >= 2:
                        cut = i + 1
                i += 1
            if cut is None and i > self.max_chars:
                cut = self._long_cut(buf, i)
            if cut is not None:
                out.append(buf[:cut])
                self._pieces += 1
                buf = buf[cut:]
                i -= cut
        self._buf, self._pos = buf, i
        return out

    def _end_mark(self, buf: str, i: int) -> Tuple[str, int, bool]:
        """At an end mark: ('cut', j, quote) when the sentence ends at j, ('go', j,
        quote) when it goes on, ('wait', i, quote) until more text shows which."""
        quote = self._quote
        j = i
        while j < len(buf) and buf[j] in ENDS:
            j += 1
        while j < len(buf) and buf[j] in CLOSERS:
            if buf[j] in "\"\u201d":
                quote = False
            j += 1
        if j >= len(buf):
            return "wait", i, self._quote
        if not buf[j].isspace():
            return "go", j, quote              # "3.5", "U.S.A", "Wait...!"
        k = j
        while k < len(buf) and buf[k] in " \t":
            k += 1
        if k >= len(buf):
            return "wait", i, self._quote
        nxt = buf[k]
        if nxt in "\r\n":
            return "cut", j, False
        # ASCII only: TinyStories (and so the model) writes many quotes as mojibake, "\u00e2\u20ac\u0153"
        if "a" <= nxt <= "z" or quote:
            return "go", j, quote              # "Wait... what?", "\"Hi!\" she said", dialogue
        if buf[i:j] == "." and self._abbreviation(buf, i):
            return "go", j, quote
        return "cut", j, quote

    @staticmethod
    def _abbreviation(buf: str, i: int) -> bool:
        k = i
        while k > 0 and buf[k - 1].isalpha():
            k -= 1
        word = buf[k:i]
        if k > 0 and buf[k - 1] == ".":
            return True                        # "e.g.", "U.S."
        if len(word) == 1:
            return word.isupper() and word != "I"   # an initial: "J. R. Tolkien"
        return word.lower() in ABBREVIATIONS

    def _long_cut(self, buf: str, i: int) -> int:
        """Where to cut a run longer than max_chars: after its last comma (if that keeps
        a useful piece), else at its last space, else right here."""
        head = buf[:i]
        best = max(head.rfind(m + " ") for m in CLAUSE_MARKS)
        if best >= self.max_chars // 4:
            return best + 1
        space = head.rstrip().rfind(" ")
        if space > 0 and speakable(head[:space]):
            return space
        return i
