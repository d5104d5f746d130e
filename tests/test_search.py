"""Encode-time search (`encode --search N`): which candidate wins, determinism, plumbing."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from claricodec.cli.main import main
from claricodec.codec import CONTEXT, WINDOW, WindowedEncoder
from claricodec.search import ASRSearch, StatesSearch, pick_closest

DATA = Path(__file__).parent / "data"


def test_pick_closest_lowest_cer_first_on_ties_and_zero_when_nothing_heard():
    assert pick_closest("hello world", ["yellow word", "hello world", "hello world"]) == 1
    assert pick_closest("hello world", ["abc", "xyz"]) == 0  # equal CER (1.0): the first
    assert pick_closest("hello world", ["", "hello"]) == 1
    assert pick_closest("", ["anything", "else"]) == 0  # silence: keep the argmax
    assert pick_closest("...", ["hello", "world"]) == 0  # normalises to nothing


class ScriptedASR:
    """Answers texts() from a script: the reference first, then one text per candidate."""

    def __init__(self, reference: str, winner: int | None, candidates: int):
        self.reference, self.winner, self.candidates = reference, winner, candidates
        self.calls = []

    def texts(self, clips, options=None):
        self.calls.append([len(c) for c in clips])
        hyps = ["zzz"] * (len(clips) - 1)
        if self.winner is not None:
            hyps[self.winner] = self.reference
        return [self.reference, *hyps]


def window_of(audio: np.ndarray, hop: int) -> np.ndarray:
    window = np.zeros((2 * CONTEXT + WINDOW) * hop, np.float32)
    take = min(len(audio), WINDOW * hop)
    window[CONTEXT * hop:CONTEXT * hop + take] = audio[:take]
    return window


@pytest.fixture
def model(tiny_codec):
    return tiny_codec.model


@pytest.fixture
def pcm(speech):
    audio, rate = speech
    assert rate == 16000
    return audio.astype(np.float32)


def test_the_candidate_the_asr_understands_is_kept(model, pcm):
    hop = model.mode.hop
    window = window_of(pcm, hop)
    search = ASRSearch(model, ScriptedASR("the quick brown fox", winner=3, candidates=6), candidates=6)
    levels = search.candidate_levels(window, 0)
    assert levels.shape == (6, model.quantizer.dim, WINDOW)
    assert torch.equal(levels[0:1], model.quantizer.argmax(
        model.quantizer.bound(model.encoder(torch.from_numpy(window)[None]))[:, :, CONTEXT:CONTEXT + WINDOW]))
    assert (levels[1:] != levels[0:1]).any(), "the policy samples should differ from the argmax somewhere"
    chosen = search(window, 0, len(pcm))
    assert np.array_equal(chosen, model.quantizer.to_index(levels[3:4])[0].numpy())
    assert search.chosen_sample == 1
    # The ASR heard the original's real samples only, and each candidate cut to the same length.
    assert search.asr.calls == [[len(pcm)] * 7]


def test_argmax_kept_on_ties_silence_and_with_one_candidate(model, pcm):
    window = window_of(pcm, model.mode.hop)
    plain = model.encode_window(window)
    tie = ASRSearch(model, ScriptedASR("hello", winner=None, candidates=4), candidates=4)
    assert np.array_equal(tie(window, 0, len(pcm)), plain)
    silent = ASRSearch(model, ScriptedASR("", winner=2, candidates=4), candidates=4)
    assert np.array_equal(silent(window, 0, len(pcm)), plain)
    one = ASRSearch(model, ScriptedASR("hello", winner=None, candidates=1), candidates=1)
    assert np.array_equal(one(window, 0, len(pcm)), plain)
    assert one.asr.calls == []  # nothing to choose between: no ASR call


def test_samples_depend_on_seed_and_window_number_only(model, pcm):
    window = window_of(pcm, model.mode.hop)
    a = ASRSearch(model, None, candidates=5, seed=0)
    b = ASRSearch(model, None, candidates=5, seed=0)
    assert torch.equal(a.candidate_levels(window, 7), b.candidate_levels(window, 7))
    assert not torch.equal(a.candidate_levels(window, 7), a.candidate_levels(window, 8))
    assert not torch.equal(a.candidate_levels(window, 7),
                           ASRSearch(model, None, candidates=5, seed=1).candidate_levels(window, 7))


def test_hotter_draws_move_more_codes_and_segments_default_to_hotter(model, pcm):
    from claricodec.search import HEAT_SEGMENTS
    window = window_of(pcm, model.mode.hop)

    def moved(search):  # share of sampled levels that leave the argmax
        levels = search.candidate_levels(window, 0)
        return float((levels[1:] != levels[:1]).float().mean())

    cool, hot = ASRSearch(model, None, candidates=9), ASRSearch(model, None, candidates=9, heat=8)
    assert cool.heat == 1.0 and hot.heat == 8.0
    assert torch.equal(cool.candidate_levels(window, 0)[0], hot.candidate_levels(window, 0)[0])  # argmax
    assert moved(hot) > moved(cool)
    assert StatesSearch(model, segment_frames=25).heat == HEAT_SEGMENTS > 1
    assert StatesSearch(model, segment_frames=25, heat=1).heat == 1.0
    with pytest.raises(ValueError, match="heat"):
        ASRSearch(model, None, heat=0)


def test_windowed_encoder_passes_window_numbers_real_sample_counts_and_signal_spans(model):
    hop = model.mode.hop
    seen = []

    def choose(window, number, valid, span):
        seen.append((number, valid, span))
        return model.encode_window(window, span)

    audio = np.random.default_rng(0).standard_normal(WINDOW * hop * 2 + 1234).astype(np.float32) * 0.1
    whole = WindowedEncoder(model, choose)
    codes = np.concatenate([whole.push(audio), whole.finish()])
    # The signal starts CONTEXT frames into the first window and ends CONTEXT frames + 1234
    # samples into the third (frame 27), so WINDOW frames further into the second.
    tail = CONTEXT + -(-1234 // hop)
    want = [(0, WINDOW * hop, (CONTEXT, 2 * CONTEXT + WINDOW)),
            (1, WINDOW * hop, (0, WINDOW + tail)), (2, 1234, (0, tail))]
    assert seen == want
    assert np.array_equal(codes, model.encode(audio))  # choose = argmax gives the plain codes
    seen.clear()
    pieces = WindowedEncoder(model, choose)  # any read size: same windows, same numbers
    parts = [pieces.push(audio[i:i + 7777]) for i in range(0, len(audio), 7777)]
    assert np.array_equal(np.concatenate([*parts, pieces.finish()]), codes)
    assert seen == want


@pytest.fixture
def run(weights_env):
    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke


def test_cli_search_with_the_real_asr_gives_a_same_size_file_that_decodes(run, tmp_path):
    plain, searched, wav = tmp_path / "plain.cc", tmp_path / "searched.cc", tmp_path / "out.wav"
    assert run("encode", DATA / "hello.wav", plain).exit_code == 0
    result = run("encode", "--search", 3, "--search-judge", "asr", DATA / "hello.wav", searched)
    assert result.exit_code == 0, result.output
    assert "(asr judge)" in result.output and "of 1 windows" in result.output  # what it did
    assert len(searched.read_bytes()) == len(plain.read_bytes())
    assert searched.read_bytes()[:12] == plain.read_bytes()[:12]  # same header
    again = tmp_path / "again.cc"
    assert run("encode", "--search", 3, "--search-judge", "asr", DATA / "hello.wav", again).exit_code == 0
    assert again.read_bytes() == searched.read_bytes()  # same input, same bytes
    assert run("decode", searched, wav).exit_code == 0
    assert sf.info(io.BytesIO(wav.read_bytes())).frames == sf.info(DATA / "hello.wav").frames


def test_cli_search_errors_are_one_line_and_leave_no_file(run, tmp_path):
    out = tmp_path / "x.cc"
    result = run("encode", "--asr", "tiny.en", DATA / "hello.wav", out)
    assert result.exit_code != 0 and "--asr only matters with --search" in result.output
    result = run("encode", "--search", 2, "--asr", tmp_path / "no-such-model", DATA / "hello.wav", out)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    result = run("encode", "--search", 0, DATA / "hello.wav", out)
    assert result.exit_code != 0
    assert not out.exists()


class ScriptedStates:
    """states_50hz() from a script: the original's states, then each candidate's, in call order."""

    def __init__(self, frames):
        self.frames, self.calls = list(frames), []

    def states_50hz_batch(self, audios):
        self.calls += [len(audio) for audio in audios]
        return np.stack([self.frames.pop(0) for _ in audios])


def test_the_states_judge_keeps_the_candidate_closest_to_the_original(model, pcm):
    window = window_of(pcm, model.mode.hop)
    rng = np.random.default_rng(0)
    original = rng.standard_normal((10, 384)).astype(np.float32)
    far = [rng.standard_normal((10, 384)).astype(np.float32) for _ in range(3)]
    near = original + 0.1 * rng.standard_normal((10, 384)).astype(np.float32)
    judge = ScriptedStates([original, far[0], far[1], far[2], near])
    search = StatesSearch(model, candidates=4, states=judge)
    chosen = search(window, 0, len(pcm))
    assert np.array_equal(chosen, model.quantizer.to_index(search.candidate_levels(window, 0)[3:4])[0].numpy())
    assert search.chosen_sample == 1
    # Original and candidates alike padded to whole 25 Hz frames for Whisper's states.
    assert judge.calls == [-(-len(pcm) // 640) * 640] * 5
    same = StatesSearch(model, candidates=3, states=ScriptedStates([original] * 4))
    assert np.array_equal(same(window, 0, len(pcm)), model.encode_window(window))  # a tie keeps the argmax


def test_cli_search_is_judged_by_states_by_default_deterministic_and_decodes(run, tmp_path):
    first, again, wav = tmp_path / "a.cc", tmp_path / "b.cc", tmp_path / "out.wav"
    result = run("encode", "--search", 3, DATA / "hello.wav", first)  # the default judge
    assert result.exit_code == 0, result.output
    assert "(states judge)" in result.output and "of 1 windows" in result.output
    assert run("encode", "--search", 3, "--search-judge", "states", DATA / "hello.wav", again).exit_code == 0
    assert again.read_bytes() == first.read_bytes()
    assert run("decode", first, wav).exit_code == 0
    for args, message in ([("--search-judge", "states"), "--search-judge only matters with --search"],
                          [("--search", 2, "--search-judge", "states", "--asr", "tiny.en"),
                           "--asr only matters with --search-judge asr"]):
        out = tmp_path / "x.cc"
        result = run("encode", *args, DATA / "hello.wav", out)
        assert result.exit_code != 0 and message in result.output and not out.exists()


def test_states_similarity_is_one_for_the_original_itself_and_lower_for_others():
    from claricodec.search import states_similarity
    from claricodec.whisper_front import WhisperStates
    rng = np.random.default_rng(1)
    original = 0.1 * rng.standard_normal(16000).astype(np.float32)
    others = np.stack([original, 0.1 * rng.standard_normal(16000).astype(np.float32)])
    scores = states_similarity(original, others, WhisperStates.shared(1))
    assert abs(scores[0] - 1.0) < 1e-5 and scores[1] < scores[0]


class ScriptedWinners(StatesSearch):
    """A states search whose judge picks from a script, one winner per choice, and records
    what it was shown."""

    def __init__(self, model, winners, candidates, segment_frames):
        super().__init__(model, candidates=candidates, segment_frames=segment_frames)
        self.winners, self.shown = list(winners), []

    def best(self, original, decoded):
        self.shown.append((len(original), decoded.shape))
        return self.winners.pop(0)


def test_segment_search_takes_each_segment_from_the_draw_the_judge_prefers_there(model, pcm):
    hop = model.mode.hop
    pcm = pcm[:60 * hop - 100]  # 60 frames: segments of 25, 25 and 10
    window = window_of(pcm, hop)
    search = ScriptedWinners(model, [2, 0, 3], candidates=4, segment_frames=25)
    chosen = search(window, 0, len(pcm))
    draws = model.quantizer.to_index(search.candidate_levels(window, 0)).numpy()
    assert np.array_equal(chosen[:25], draws[2, :25])  # segment 0 from draw 2
    assert np.array_equal(chosen[25:50], draws[0, 25:50])  # segment 1: the argmax kept
    assert np.array_equal(chosen[50:], draws[3, 50:])  # the last, to the window's end, from draw 3
    assert search.choices == 3 and search.chosen_sample == 2
    # Each choice was judged on the whole signal: the original and every trial, cut alike.
    assert search.shown == [(len(pcm), (4, len(pcm)))] * 3
    whole = ScriptedWinners(model, [2], candidates=4, segment_frames=None)
    whole_draws = model.quantizer.to_index(whole.candidate_levels(window, 0)).numpy()  # cooler draws
    assert np.array_equal(whole(window, 0, len(pcm)), whole_draws[2])  # no segments: one choice


def test_search_segment_option_checks_and_reports(run, tmp_path):
    out = tmp_path / "x.cc"
    result = run("encode", "--search-segment", 1, DATA / "hello.wav", out)
    assert result.exit_code != 0 and "--search-segment only matters with --search" in result.output
    assert not out.exists()
    result = run("encode", "--search", 2, "--search-segment", 1, DATA / "hello.wav", out)
    assert result.exit_code == 0, result.output
    assert "segments (1 s each)" in result.output
    again = tmp_path / "again.cc"
    assert run("encode", "--search", 2, "--search-segment", 1, DATA / "hello.wav", again).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # same input, same bytes
    from claricodec.api import ClariCodec
    with pytest.raises(ValueError, match="search_segment"):
        ClariCodec(search=2, search_segment=0)


class CountingStates:
    """The real Whisper states, counting the signals it is asked to hear."""

    def __init__(self):
        from claricodec.whisper_front import WhisperStates
        self.states, self.calls = WhisperStates.shared(1), 0

    def states_50hz_batch(self, audios):
        self.calls += len(audios)
        return self.states.states_50hz_batch(audios)


def test_the_states_judge_hears_each_signal_once_a_window_with_the_same_choices(model, pcm):
    hop = model.mode.hop
    pcm = pcm[:60 * hop]  # 3 segments of 25, 25 and 10 frames
    window = window_of(pcm, hop)

    class Forgetful(StatesSearch):  # recomputes everything for every choice
        def best(self, original, decoded):
            self._heard = {}
            return super().best(original, decoded)

    memo, plain = CountingStates(), CountingStates()
    chosen = StatesSearch(model, candidates=4, states=memo, segment_frames=25)(window, 0, len(pcm))
    again = Forgetful(model, candidates=4, states=plain, segment_frames=25)(window, 0, len(pcm))
    assert np.array_equal(chosen, again)
    # The original and the codes so far are heard once: 1 + 4 + 3 + 3 instead of 3 x 5.
    assert plain.calls == 15 and memo.calls == 11


def test_a_segment_is_decoded_again_only_where_its_codes_reach(model):
    """_decode_changed splices a decode of the segment and its neighbourhood into the codes
    so far: the same audio as decoding every trial whole."""
    search = StatesSearch(model, candidates=4, segment_frames=25)
    levels = torch.tensor(model.mode.levels)
    generator = torch.Generator().manual_seed(3)
    so_far = (torch.rand(len(levels), 120, generator=generator) * levels[:, None]).long()
    trials = so_far.expand(3, -1, -1).clone()
    for start, stop in [(0, 25), (50, 75), (100, 120)]:
        trials[:, :, start:stop] = (torch.rand(3, len(levels), stop - start, generator=generator)
                                    * levels[:, None]).long()
        heard = search._decode(so_far[None])[0]
        spliced = search._decode_changed(trials, heard, start, stop)
        whole = search._decode(trials)
        assert np.abs(spliced - whole).max() < 1e-4
        trials[:] = so_far
