"""A second judge from another ASR family: CMU PocketSphinx (HMM acoustic model + n-gram
language model, its US English model ships inside the PyPI wheel).

Why: the codec's encoder and a training loss use Whisper tiny.en, and so does `claricodec
eval`. A gain that only Whisper hears is worth little to a human listener; PocketSphinx
shares no network, no training data and no decoding method with it. It is a much weaker
recogniser (its absolute WER is high), so compare systems with it side by side, never
with Whisper's figures. Same interface as `asr.ASR.texts`, so `evaluate.run` takes it.
"""
from __future__ import annotations

import numpy as np

from .asr import _too_quiet


class SphinxASR:
    name = "pocketsphinx-en-us"

    def __init__(self):
        try:
            from pocketsphinx import Config, Decoder
        except ImportError:
            raise RuntimeError("the second ASR needs pocketsphinx: pip install 'claricodec[eval]'") from None
        # The wheel's en-us model. Batch cepstral mean normalisation: each clip is normalised
        # by its own mean, not a running one.
        self._config = Config(samprate=16000, loglevel="FATAL", cmn="batch")
        self._decoder_class = Decoder

    @property
    def config(self) -> dict:
        """What produced the transcripts, for reports (as ASR.config)."""
        return {"model": self.name, "backend": "pocketsphinx", "cmn": "batch"}

    def text(self, clip: np.ndarray) -> str:
        """16 kHz mono float32 -> lower-case words ('' for silence)."""
        pcm = (np.clip(np.asarray(clip, np.float32), -1.0, 1.0) * 32767).astype("<i2")
        # A fresh decoder for every clip (~0.4 s): a reused one carries state from clip to
        # clip (3 of 60 arctic clips came out differently after others), so a transcript
        # would depend on what was decoded before it.
        decoder = self._decoder_class(self._config)
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def texts(self, clips, options=None) -> list[str]:
        """As ASR.texts: clips quieter than options.silence_dbfs (default -60 dBFS) get ''
        without a decoder call (PocketSphinx, like Whisper, hears words in digital silence)."""
        dbfs = getattr(options, "silence_dbfs", -60.0)
        return ["" if _too_quiet(clip, dbfs) else self.text(clip) for clip in clips]
