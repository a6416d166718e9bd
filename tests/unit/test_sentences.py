"""The sentence splitter: hand-made hard cases, token-by-token streaming, and the
first 1,000 TinyStories validation stories."""
import random
import re

import pytest

from conftest import data_path
from robot.speech.sentences import SentenceSplitter, speakable


def split(text, max_chars=240, first_clause=False, step=None, seed=0):
    """All pieces of `text`, fed whole (step=None) or in random slices of 1..step chars."""
    s = SentenceSplitter(max_chars, first_clause)
    out = []
    if step is None:
        out += s.feed(text)
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(text):
            n = rng.randint(1, step)
            out += s.feed(text[i:i + n])
            i += n
    out += s.flush()
    assert "".join(out) == text, "the pieces must add up to exactly the text fed in"
    return [p.strip() for p in out]


@pytest.mark.parametrize("text, want", [
    ("Tom ran. Sam sat! Is it red? Yes.", ["Tom ran.", "Sam sat!", "Is it red?", "Yes."]),
    ("Mr. Smith met Dr. Brown and Mrs. Lee. They smiled.",
     ["Mr. Smith met Dr. Brown and Mrs. Lee.", "They smiled."]),
    ("J. R. R. Tolkien wrote a book. I read it.", ["J. R. R. Tolkien wrote a book.", "I read it."]),
    ("It was I. Then we left.", ["It was I.", "Then we left."]),
    ("The ball cost 3.50 dollars. It was red.", ["The ball cost 3.50 dollars.", "It was red."]),
    ("He waited... and waited. Then he left.", ["He waited... and waited.", "Then he left."]),
    ("He waited\u2026 and waited. Then he left.", ["He waited\u2026 and waited.", "Then he left."]),
    ("Nobody came... The end.", ["Nobody came...", "The end."]),
    ("What?! No way!", ["What?!", "No way!"]),
    ("We saw dogs, cats, e.g. the big one. Wow.", ["We saw dogs, cats, e.g. the big one.", "Wow."]),
    ('"Hi!" she said. "Let\'s play."', ['"Hi!" she said.', '"Let\'s play."']),
    ('Tom said, "I am hungry. Can we eat?" Mom nodded.', ['Tom said, "I am hungry. Can we eat?"', "Mom nodded."]),
    ("\u201cHi!\u201d she said. \u201cBye.\u201d", ["\u201cHi!\u201d she said.", "\u201cBye.\u201d"]),
    ("They went home (it was late.) Then they slept.", ["They went home (it was late.)", "Then they slept."]),
    ("The end\nOnce upon a time", ["The end", "Once upon a time"]),
    ("She was happy.\n\nThe next day, she ran.", ["She was happy.", "The next day, she ran."]),
    ('He said, "Come here.\nShe came.', ['He said, "Come here.', "She came."]),   # a quote left open ends at the paragraph
])
def test_hard_cases(text, want):
    assert split(text) == want
    for step in (1, 2, 5):
        assert split(text, step=step, seed=step) == want, f"fed {step} characters at a time"


def test_a_sentence_is_handed_out_one_token_after_its_end():
    s = SentenceSplitter()
    assert s.feed("Once upon a time") == []
    assert s.feed(" there was a dog") == []
    assert s.feed(".") == []                 # "." might be "Mr." or "3.5": wait for the next word
    assert s.feed(" The") == ["Once upon a time there was a dog."]
    assert s.feed(" dog ran.") == []
    assert s.feed("\n") == [" The dog ran."]  # a paragraph break decides at once
    assert s.flush() == ["\n"]


def test_end_of_story_flushes_an_unfinished_sentence():
    s = SentenceSplitter()
    assert s.feed("The dog ran. It was fa") == ["The dog ran."]
    assert s.feed("st and") == []
    assert s.flush() == [" It was fast and"]
    assert s.flush() == []


def test_long_runs_are_cut_at_a_comma_then_at_a_space():
    text = ", ".join(["the dog ran and the cat sat"] * 20) + "."
    pieces = split(text, max_chars=80)
    assert len(pieces) > 5
    assert all(len(p) <= 81 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    no_commas = " ".join(["word"] * 100)
    pieces = split(no_commas, max_chars=60)
    assert all(len(p) <= 61 for p in pieces) and all(p.split() == ["word"] * len(p.split()) for p in pieces)
    assert len(split("x" * 130, max_chars=60)) == 3      # no space at all: a hard cut


def test_first_clause_lets_speech_start_before_the_first_full_stop():
    pieces = split("Once upon a time, there was a dog, a cat and a bird. They played.", first_clause=True)
    assert pieces == ["Once upon a time,", "there was a dog, a cat and a bird.", "They played."]
    # one word, a number, or a quote is not a clause worth saying alone
    assert split("Yes, 1,000 dogs ran. Then, more.", first_clause=True) == ["Yes, 1,000 dogs ran.", "Then, more."]
    assert split('"Hi, Tom," she said. Ok.', first_clause=True) == ['"Hi, Tom," she said.', "Ok."]


def test_speakable():
    assert speakable(" Hello.") and speakable("3")
    assert not speakable(" \n") and not speakable('"!?.') and not speakable("")


@pytest.fixture(scope="module")
def stories():
    with open(data_path("tinystories_val_1000.txt"), encoding="utf-8") as f:
        text = f.read()
    found = [s.strip("\n") for s in text.split("<|endoftext|>") if s.strip()]
    assert len(found) == 1000
    return found


def test_real_stories_split_the_same_whole_or_token_by_token(stories):
    for i, story in enumerate(stories):
        whole = split(story)
        assert split(story, step=4, seed=i) == whole, f"story {i}"


def test_real_stories_are_cut_at_sentence_ends(stories):
    total = ends = balanced = lower_after_cut = 0
    for story in stories:
        pieces = split(story)
        for prev, p in zip([None] + pieces, pieces):
            total += 1
            assert len(p) <= 250
            assert not re.search(r"\b(Mr|Mrs|Ms|Dr)\.$", p), p
            if re.search(r"[.!?\u2026][\"'\u201d\u2019)\]]*$", p):
                ends += 1
            if p.count('"') % 2 == 0:
                balanced += 1
            if "a" <= p[:1] <= "z":
                # a piece starts in lower case only after a cut for length, never after a full stop
                assert prev is not None and not re.search(r"[.!?]\W*$", prev), (prev, p)
                lower_after_cut += 1
    assert total > 12000                      # ~14 sentences a story
    assert ends / total > 0.99                # the rest: a story's unfinished last words, long dialogue cut at commas
    assert balanced / total > 0.99            # dialogue stays with its quote marks
    assert lower_after_cut / total < 0.01
