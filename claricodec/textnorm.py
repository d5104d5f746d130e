"""Text normalisation before scoring, and WER / CER through jiwer.

References in the corpus are upper-case words ("SEVEN NINE FOUR SIX", "IT'S NOT FISH");
Whisper writes cased, punctuated text with digits ("7946.", "It's not fish."). Scoring the
two raw would count formatting as recognition errors, so both sides go through the same
`normalize` first:

1. Unicode compatibility form, lower case, curly quotes made straight.
2. Symbols: "&" -> and, "%" -> percent, "$5" -> 5 dollars, "3.5" -> 3 point 5, digit
   group commas dropped ("9,169" -> 9169).
3. Apostrophes removed ("it's" -> its, "o'clock" -> oclock), so "its"/"it's" agree.
4. Hyphens, slashes and all other punctuation become spaces ("twenty-one", "J-P-E-G").
5. Letters and digits split apart ("jpeg4" -> jpeg 4); digit ordinals become words
   ("21st" -> 20 first, the same as "twenty first" gives below).
6. British spellings to American (a small table + common -ise/-yse verbs).
7. Filler sounds (uh, um, hmm, mm, mhm) dropped.
8. Number words to digits: "twenty one" -> 21, "eight ninety seven" -> 8 97,
   "one hundred and five" -> 105, "oh" next to a number -> 0.
9. Every digit string spelled digit by digit: 21 -> "2 1", 9169 -> "9 1 6 9". This is
   what makes "nine one six nine", "9169", "91 69" and "ninety one sixty nine" all
   score equal, whatever grouping the ASR chose.
10. Runs of two or more single letters joined: "j p e g" -> jpeg, so spelled words
   ("P A T T E R S O N") agree with however the ASR wrote them.

Steps 9 and 10 change word counts (a spelled word is one token, a number one token per
digit); both sides are counted the same way, so WER stays comparable between systems.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# --- tables ----------------------------------------------------------------------------

UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
         "seven": 7, "eight": 8, "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
         "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
        "seventy": 70, "eighty": 80, "ninety": 90}
SCALES = {"thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9}

# Ordinal words for "21st" -> "20 first"; tens ordinals for "20th" -> "twentieth".
ORDINAL_UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                 "eighth", "ninth"]
ORDINAL_TEENS = ["tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
                 "sixteenth", "seventeenth", "eighteenth", "nineteenth"]
ORDINAL_TENS = {2: "twentieth", 3: "thirtieth", 4: "fortieth", 5: "fiftieth", 6: "sixtieth",
                7: "seventieth", 8: "eightieth", 9: "ninetieth"}

# British -> American. Whole words; inflections listed where they are common.
SPELLINGS = {
    "colour": "color", "colours": "colors", "coloured": "colored", "colourful": "colorful",
    "favour": "favor", "favours": "favors", "favourite": "favorite", "favourites": "favorites",
    "honour": "honor", "honours": "honors", "honoured": "honored",
    "humour": "humor", "labour": "labor", "neighbour": "neighbor", "neighbours": "neighbors",
    "neighbourhood": "neighborhood", "behaviour": "behavior", "behaviours": "behaviors",
    "flavour": "flavor", "flavours": "flavors", "harbour": "harbor", "rumour": "rumor",
    "vapour": "vapor", "odour": "odor", "armour": "armor", "savour": "savor",
    "endeavour": "endeavor", "glamour": "glamor",
    "centre": "center", "centres": "centers", "theatre": "theater", "theatres": "theaters",
    "metre": "meter", "metres": "meters", "litre": "liter", "litres": "liters",
    "fibre": "fiber", "calibre": "caliber", "sombre": "somber", "spectre": "specter",
    "travelled": "traveled", "travelling": "traveling", "traveller": "traveler",
    "travellers": "travelers", "cancelled": "canceled", "cancelling": "canceling",
    "labelled": "labeled", "modelling": "modeling", "jewellery": "jewelry",
    "grey": "gray", "greys": "grays", "programme": "program", "programmes": "programs",
    "defence": "defense", "offence": "offense", "licence": "license", "pretence": "pretense",
    "catalogue": "catalog", "dialogue": "dialog", "analogue": "analog",
    "cheque": "check", "cheques": "checks", "tyre": "tire", "tyres": "tires",
    "plough": "plow", "aluminium": "aluminum", "mould": "mold", "moustache": "mustache",
    "pyjamas": "pajamas", "sceptical": "skeptical", "enrol": "enroll", "fulfil": "fulfill",
    "skilful": "skillful", "ageing": "aging", "judgement": "judgment", "practise": "practice",
    "mum": "mom", "mummy": "mommy", "okay": "ok",
}
# -ise / -yse verbs (organise -> organize); the stems, with -ise, -ised, -ises, -ising,
# -isation(s) all mapped.
ISE_STEMS = ["organ", "real", "recogn", "apolog", "emphas", "minim", "maxim", "optim",
             "final", "critic", "summar", "categor", "priorit", "special", "standard",
             "memor", "author", "modern", "character", "civil", "global", "normal",
             "visual", "util", "stabil", "familiar", "symbol", "sympath", "hospital",
             "agon", "fertil", "harmon", "local", "personal", "popular", "capital"]
for _stem in ISE_STEMS:
    for _end in ("ise", "ised", "ises", "ising", "isation", "isations"):
        SPELLINGS[_stem + _end] = _stem + _end.replace("is", "iz", 1)
for _stem in ("analy", "paraly", "cataly"):
    for _end in ("se", "sed", "ses", "sing"):
        SPELLINGS[_stem + _end] = _stem + "z" + _end[1:]
SPELLINGS.pop("analyses", None)  # plural of "analysis" as well; leave it alone

FILLERS = {"uh", "um", "umm", "uhm", "hmm", "hm", "mm", "mmm", "mhm", "er", "erm"}


# --- normalisation ---------------------------------------------------------------------

def normalize(text: str | None) -> str:
    """Canonical lower-case words separated by single spaces (see the module docstring)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 9,169 -> 9169
    text = re.sub(r"(?<=\d)\.(?=\d)", " point ", text)  # 3.5 -> 3 point 5
    text = re.sub(r"\$\s*(\d+)", r"\1 dollars", text)
    text = text.replace("%", " percent ").replace("&", " and ").replace("+", " plus ")
    text = text.replace("'", "")
    text = re.sub(r"[^\w\s]|_", " ", text)  # every other symbol and punctuation
    text = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", text)  # jpeg4 -> jpeg 4
    text = re.sub(r"\b(\d+) (st|nd|rd|th)\b", lambda m: _ordinal(int(m.group(1))), text)
    words = [SPELLINGS.get(w, w) for w in text.split() if w not in FILLERS]
    words = _numbers_to_digits(words)
    words = [piece for w in words for piece in (list(w) if w.isdigit() else [w])]
    return " ".join(_join_letters(words))


def _ordinal(n: int) -> str:
    """21 -> "20 first", 20 -> "twentieth", 13 -> "thirteenth", as the word forms parse."""
    rest = n % 100
    if 10 <= rest < 20:
        head, word = n - rest, ORDINAL_TEENS[rest - 10]
    elif rest % 10:
        head, word = n - rest % 10, ORDINAL_UNITS[rest % 10]
    elif rest:
        head, word = n - rest, ORDINAL_TENS[rest // 10]
    else:
        return f"{n} th"  # 100th: rare, left as is
    return f"{head} {word}" if head else word


def _is_number_word(word: str) -> bool:
    return word in UNITS or word in TEENS or word in TENS or word == "hundred" \
        or word in SCALES or word.isdigit()


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Replace each run of number words by digit strings: one string per spoken number,
    e.g. "eight ninety seven" -> ["8", "97"], "two thousand and five" -> ["2005"]."""
    out: list[str] = []
    total, group, last = 0, None, None  # value so far, value below 1000, previous kind

    def flush():
        nonlocal total, group, last
        if group is not None or total:
            out.append(str(total + (group or 0)))
        total, group, last = 0, None, None

    for i, word in enumerate(words):
        prev_num = i > 0 and _is_number_word(words[i - 1])
        next_num = i + 1 < len(words) and _is_number_word(words[i + 1])
        if word in ("oh", "o") and (prev_num or next_num) and not (
                i > 0 and len(words[i - 1]) == 1 and words[i - 1].isalpha()):
            word = "zero"  # "three one oh one", but not the letter in "w o o d"
        if word.isdigit():
            flush()
            out.append(word)
        elif word in UNITS or word in TEENS:
            value = UNITS.get(word, TEENS.get(word))
            # "twenty one", "hundred (and) five": absorbed; otherwise a new number
            if value and (last == "tens" and value < 10 or last in ("hundred", "scale", "and")):
                group = (group or 0) + value
                last = "unit"
            else:
                flush()
                if value == 0:
                    out.append("0")
                else:
                    group, last = value, "unit" if value < 10 else "teen"
        elif word in TENS:
            if last in ("hundred", "scale", "and"):
                group = (group or 0) + TENS[word]
            else:
                flush()
                group = TENS[word]
            last = "tens"
        elif word == "hundred":
            if group is not None and last in ("unit", "teen", "tens") and group < 100:
                group *= 100  # "nineteen hundred" too
            elif group is None:
                group = 100  # "hundred" alone
            else:
                flush()
                group = 100
            last = "hundred"
        elif word in SCALES:
            if group is None and not total:
                out.append(word)  # "thousands of" stays a word
                continue
            total += (group or 1) * SCALES[word]
            group, last = None, "scale"
        elif word == "and" and last in ("hundred", "scale") and next_num:
            last = "and"
        else:
            flush()
            out.append(word)
    flush()
    return out


def _join_letters(words: list[str]) -> list[str]:
    """Runs of two or more single letters become one word: "j p e g" -> "jpeg"."""
    out, run = [], []
    for word in words + [""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        if run:
            out.extend(["".join(run)] if len(run) > 1 else run)
            run = []
        if word:
            out.append(word)
    return out


# --- scoring ---------------------------------------------------------------------------

@dataclass
class Errors:
    """Edit counts of hypotheses against references; add them up over a corpus."""
    word_errors: int = 0
    ref_words: int = 0
    char_errors: int = 0
    ref_chars: int = 0

    def __add__(self, other: "Errors") -> "Errors":
        return Errors(self.word_errors + other.word_errors, self.ref_words + other.ref_words,
                      self.char_errors + other.char_errors, self.ref_chars + other.ref_chars)

    @property
    def wer(self) -> float | None:
        return self.word_errors / self.ref_words if self.ref_words else None

    @property
    def cer(self) -> float | None:
        return self.char_errors / self.ref_chars if self.ref_chars else None


def count_errors(reference: str | None, hypothesis: str | None, *, normalized: bool = False) -> Errors:
    """Word and character edit counts (substitutions + deletions + insertions) for one
    pair, after normalisation. An empty reference counts every hypothesis word as an
    insertion (jiwer refuses empty references)."""
    import jiwer
    ref = (reference or "") if normalized else normalize(reference)
    hyp = (hypothesis or "") if normalized else normalize(hypothesis)
    if not ref:
        return Errors(len(hyp.split()), 0, len(hyp), 0)
    if not hyp:
        return Errors(len(ref.split()), len(ref.split()), len(ref), len(ref))
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return Errors(words.substitutions + words.deletions + words.insertions, len(ref.split()),
                  chars.substitutions + chars.deletions + chars.insertions, len(ref))


def corpus_errors(references, hypotheses) -> Errors:
    """Summed over the corpus: WER = total word errors / total reference words."""
    total = Errors()
    for ref, hyp in zip(references, hypotheses, strict=True):
        total += count_errors(ref, hyp)
    return total


def wer(references, hypotheses) -> float | None:
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    return corpus_errors(references, hypotheses).wer


def cer(references, hypotheses) -> float | None:
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    return corpus_errors(references, hypotheses).cer
