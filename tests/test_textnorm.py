"""Text normalisation rules and WER/CER: each rule, and the corpus-level arithmetic."""
from __future__ import annotations

import pytest

pytest.importorskip("jiwer")

from claricodec.textnorm import Errors, cer, corpus_errors, count_errors, normalize, wer  # noqa: E402


def same(a: str, b: str) -> bool:
    return normalize(a) == normalize(b)


def test_case_and_punctuation():
    assert normalize("Hello, World!  How are you?") == "hello world how are you"
    assert normalize("“Quoted” (aside); end.") == "quoted aside end"
    assert normalize("") == "" and normalize(None) == ""


@pytest.mark.parametrize("digits, words", [
    ("7", "seven"),
    ("21", "twenty one"),
    ("21", "twenty-one"),
    ("Enter 9169.", "ENTER NINE ONE SIX NINE"),
    ("91 69", "nine one six nine"),
    ("897", "EIGHT NINETY SEVEN"),
    ("1229 59", "TWELVE TWENTY NINE FIFTY NINE"),
    ("105", "one hundred and five"),
    ("2,005", "two thousand and five"),
    ("1999", "nineteen hundred ninety nine"),
    ("1999", "nineteen ninety nine"),
    ("3310188", "THREE THREE ONE OH ONE EIGHT EIGHT"),
    ("0", "zero"),
    ("the 21st century", "the twenty-first century"),
    ("the 3rd time", "the third time"),
    ("3.5", "three point five"),
    ("$5", "five dollars"),
    ("50%", "fifty percent"),
])
def test_numbers_as_digits_or_words_score_equal(digits, words):
    assert same(digits, words), (normalize(digits), normalize(words))
    assert wer(words.upper(), digits) == 0.0


def test_numbers_that_differ_still_differ():
    assert not same("7", "eight")
    assert not same("21", "twenty two")
    assert wer("SEVEN NINE FOUR SIX", "7945") == pytest.approx(1 / 4)


def test_oh_is_zero_only_among_numbers():
    assert normalize("oh no") == "oh no"
    assert normalize("one oh five") == "1 0 5"
    assert normalize("B R E N T W O O D") == "brentwood"  # the letter, not a zero


def test_british_and_american_spelling():
    for british, american in [("colour", "color"), ("favourite", "favorite"), ("centre", "center"),
                              ("organise", "organize"), ("realised", "realized"),
                              ("organisation", "organization"), ("analyse", "analyze"),
                              ("travelled", "traveled"), ("grey", "gray")]:
        assert same(british, american), british
    assert normalize("Colour") == "color"
    assert normalize("analyses") == "analyses"  # also the plural of analysis: left alone


def test_apostrophes():
    assert same("IT'S NOT FISH", "It's not fish.")
    assert same("it\u2019s", "it's")  # curly apostrophe
    assert same("its", "it's")
    assert normalize("Bob's dog") == "bobs dog"


def test_hyphens_and_slashes_split_words():
    assert normalize("well-known") == "well known"
    assert normalize("and/or") == "and or"


def test_spelled_letters_join():
    assert normalize("J P E G FOUR") == "jpeg 4"
    assert same("J P E G FOUR", "JPEG4")
    assert same("P A T T E R S O N", "P-A-T-T-E-R-S-O-N.")
    assert same("ERASE A B F N Q FIFTY SEVEN", "Erase ABFNQ57.")
    assert normalize("a cat") == "a cat"  # one single letter is just a word


def test_fillers_dropped():
    assert normalize("Uh, I mean, um, yes") == "i mean yes"


def test_wer_and_cer_of_one_pair():
    assert wer("IT'S NOT FISH", "It's not fresh.") == pytest.approx(1 / 3)
    # "fish" -> "fresh": its + space + not + space + f(r)esh: 1 insertion, 1 substitution
    assert cer("IT'S NOT FISH", "It's not fresh.") == pytest.approx(2 / len("its not fish"))
    assert wer("HELLO", "") == 1.0


def test_corpus_wer_is_total_errors_over_total_words_not_a_mean():
    refs, hyps = ["one two three four", "yes"], ["one two three four", "no"]
    assert wer(refs, hyps) == pytest.approx(1 / 5)  # a mean of per-utterance WER gives 0.5
    total = corpus_errors(refs, hyps)
    assert (total.word_errors, total.ref_words) == (1, 5)


def test_empty_reference_counts_insertions():
    errors = count_errors("", "hello there")
    assert errors == Errors(word_errors=2, ref_words=0, char_errors=len("hello there"), ref_chars=0)
    assert errors.wer is None and errors.cer is None
    assert (count_errors("", "") + count_errors("big cat", "big hat")).wer == pytest.approx(1 / 2)
