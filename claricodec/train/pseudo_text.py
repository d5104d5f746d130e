"""Transcripts for training utterances that have none, from Whisper tiny.en.

The losses on words (the CTC head, the word loss) train only on transcribed utterances.
In the shared corpus the untranscribed ones are mostly LibriSpeech: 251 native speakers of
read English, the kind of speech the codec is judged on, which those losses never saw.
Whisper tiny.en transcribes clean read speech well (a few % WER), and the word loss
compares Whisper's own predictions on the decoded audio with those on the original, so its
transcript is a fair stand-in for a human one there.

`pseudo_text.json` in a prepared cache: {"asr": what transcribed, "texts": {id: TEXT}},
TEXT in the corpus's own style (upper-case words with apostrophes). Utterances whose
transcript is empty, has digits (the CTC alphabet has none, and a digit's spoken form is
a guess) or is longer than Whisper's 30 s window are left without one.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .data import utterance_pcm

PSEUDO_TEXT_FILE = "pseudo_text.json"
MAX_SECONDS = 30.0  # Whisper hears 30 s at most
_WORD = re.compile(r"[A-Z']+")


def corpus_style(text: str) -> str | None:
    """Whisper's cased, punctuated text as the corpus writes transcripts ("It's late." ->
    "IT'S LATE"); None where no fair transcript comes out."""
    text = text.upper().replace("\u2019", "'").replace("-", " ")
    if not text.strip() or any(c.isdigit() for c in text):
        return None
    words = [w.strip("'") for w in _WORD.findall(text)]
    words = [w for w in words if w]
    return " ".join(words) or None


def untranscribed(index: list[dict], rate: int = 16000) -> list[int]:
    """Utterance numbers with no transcript that Whisper can hear whole."""
    return [i for i, utt in enumerate(index)
            if not utt.get("text") and utt["length"] <= MAX_SECONDS * rate]


def transcribe_cache(cache_dir: Path, asr, options, batch: int = 8, progress=None) -> dict:
    """Transcribe a prepared cache's untranscribed utterances; write and return the file's
    contents. `asr`: a claricodec.asr.ASR; `options`: its DecodeOptions."""
    cache_dir = Path(cache_dir)
    index = json.loads((cache_dir / "index.json").read_text())
    audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
    todo = untranscribed(index)
    texts = {}
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        clips = [utterance_pcm(audio, index[i]) for i in chunk]
        for i, heard in zip(chunk, asr.texts(clips, options)):
            text = corpus_style(heard)
            if text:
                texts[index[i]["id"]] = text
        if progress:
            progress(len(chunk))
    result = {"asr": asr.config | {"beam_size": options.beam_size}, "texts": texts}
    (cache_dir / PSEUDO_TEXT_FILE).write_text(json.dumps(result, indent=1))
    return result


def read_pseudo_texts(cache_dir: Path) -> dict[str, str]:
    path = Path(cache_dir) / PSEUDO_TEXT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{cache_dir} has no {PSEUDO_TEXT_FILE}: run `claricodec train pseudo-text`")
    return json.loads(path.read_text())["texts"]
