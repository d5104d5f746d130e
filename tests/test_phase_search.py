"""Phase search (`encode --phase-search`): each phrase coded at two frame phases, the judge's
choice sent as plain frames (nothing signalled), and session 26's lead flag still decoded."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import claricodec.phase
from claricodec.api import ClariCodec
from claricodec.bitstream import FLAG_LEAD, Header, decode_header, encode_header, read_stream, write_stream
from claricodec.cli.main import main
from claricodec.codec import CONTEXT, WINDOW, PhraseEncoder
from claricodec.phase import PhasedEncoder, is_pause, phase_offsets

MODEL_ID = bytes.fromhex("0a0b0c0d")
HOP = 640


@pytest.fixture
def judge(monkeypatch):
    """pick_phase scripted: choices to make in turn (the last repeats), and what it was shown."""
    script = {"choices": [0], "shown": []}

    def pick(original, decoded, states=None):
        script["shown"].append((original, decoded))
        choices = script["choices"]
        return choices.pop(0) if len(choices) > 1 else choices[0]

    monkeypatch.setattr(claricodec.phase, "pick_phase", pick)
    return script


def encode_all(encoder, signal: np.ndarray, block: int | None = None) -> np.ndarray:
    blocks = [signal] if block is None else [signal[i:i + block] for i in range(0, len(signal), block)]
    return np.concatenate([encoder.push(b) for b in blocks] + [encoder.finish()])


def as_file(codec: ClariCodec, samples: np.ndarray) -> np.ndarray:
    """The codes of samples coded as a file of their own (one phrase)."""
    return encode_all(PhraseEncoder(codec.model), samples)


def speech_signal(codec: ClariCodec, speech) -> np.ndarray:
    audio, rate = speech
    return codec.decode(codec.encode(audio, rate))[0]  # any 16 kHz signal with sound in it


def test_offsets_spread_over_a_frame():
    assert phase_offsets(640, 2) == [0, 320]
    assert phase_offsets(640, 4) == [0, 160, 320, 480]
    with pytest.raises(ValueError):
        phase_offsets(640, 0)


def test_a_delayed_phrase_fills_its_own_frames_and_the_decoder_needs_no_flag(tiny_codec, tiny_weights,
                                                                            speech, judge):
    signal = speech_signal(tiny_codec, speech)
    signal = np.concatenate([signal, np.zeros(1000, np.float32)])  # ends in silence: may be delayed
    n = len(signal)

    judge["choices"] = [0]  # as it is: the same bytes as plain encoding
    searching = ClariCodec(tiny_weights, phase_search=True)
    assert searching.encode(signal, 16000) == tiny_codec.encode(signal, 16000)
    original, shown = judge["shown"][-1]
    assert np.array_equal(original, signal) and [len(s) for s in shown] == [n, n]

    judge["choices"] = [1]  # delayed 20 ms inside the same frames
    data = searching.encode(signal, 16000)
    stream = read_stream(data)
    assert not stream.header.lead and stream.header.num_samples == n
    frames = -(-n // HOP)
    delayed = np.concatenate([np.zeros(320, np.float32), signal])[:frames * HOP]
    assert stream.indices == as_file(tiny_codec, delayed).tolist()
    decoded, _ = tiny_codec.decode(data)
    assert len(decoded) == n
    # The judge heard it moved back in place; the receiver hears it 320 samples late.
    np.testing.assert_allclose(judge["shown"][-1][1][1][:n - 320], decoded[320:], atol=1e-6)
    assert tiny_codec.decode(searching.encode(signal, 16000, mode=2))[0].tolist() == decoded.tolist()


def test_a_phase_that_would_leave_out_sound_is_not_tried(tiny_codec, speech, judge):
    signal = speech_signal(tiny_codec, speech)
    loud_end = np.concatenate([signal, 0.5 * np.ones(HOP * 3, np.float32)])  # ends on a frame boundary, loud
    encoder = PhasedEncoder(tiny_codec.model)
    codes = encode_all(encoder, loud_end)
    assert judge["shown"] == [] and encoder.chosen == [0]  # only one candidate: no judging
    assert codes.tolist() == as_file(tiny_codec, loud_end).tolist()
    tail = np.zeros(100, np.float32)
    assert is_pause(tail, loud_end, HOP) and not is_pause(loud_end[-320:], loud_end, HOP)
    assert is_pause(np.zeros(0, np.float32), loud_end, HOP)


def test_each_phrase_of_a_long_signal_has_its_own_phase_and_any_read_size_gives_the_same_codes(
        tiny_codec, speech, judge):
    one = speech_signal(tiny_codec, speech)[:4 * 16000]  # phrases under 6 s, so cut at the pauses
    quiet = 1e-3 * np.abs(one).max()  # pauses of faint noise: what comes before a phrase matters
    pause = (quiet * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    # Over 10 s: cut into phrases at the pauses. The last pause is kept under 200 ms, so no
    # cut falls in it and the last phrase ends in it.
    signal = np.concatenate([one, pause] * 6)[:-int(0.85 * 16000)]
    assert len(signal) > WINDOW * HOP
    phrases = []
    encode_all(PhraseEncoder(tiny_codec.model, choose=recording(tiny_codec, phrases)), signal)
    assert len(phrases) >= 2
    judge["choices"] = [1, 0, 1, 1, 0, 1, 0, 1]
    coded = []
    encoder = PhasedEncoder(tiny_codec.model, choose=recording(tiny_codec, coded))
    codes = encode_all(encoder, signal)
    assert len(codes) == -(-len(signal) // HOP)
    assert encoder.chosen == [320 * c for c in [1, 0, 1, 1, 0, 1, 0, 1][:len(phrases)]]
    # Every phrase (all end in a pause) coded as it is, then delayed by 320 samples in its
    # own frames: the 320 samples before it first, its last 320 left out.
    assert len(coded) == 2 * len(phrases)
    expected, at = [], 0
    padded = np.concatenate([np.zeros(320, np.float32), signal])
    for number, (phrase, offset) in enumerate(zip(phrases, encoder.chosen)):
        frames = -(-len(phrase) // HOP)
        delayed = np.concatenate([padded[at:at + 320], phrase])[:frames * HOP]
        assert np.array_equal(coded[2 * number], phrase) and np.array_equal(coded[2 * number + 1], delayed)
        expected.append(as_file(tiny_codec, delayed if offset else phrase))
        at += len(phrase)
    assert codes.tolist() == np.concatenate(expected).tolist()
    judge["choices"] = [1, 0, 1, 1, 0, 1, 0, 1]
    again = encode_all(PhasedEncoder(tiny_codec.model), signal, block=4321)
    assert again.tolist() == codes.tolist()


def recording(codec: ClariCodec, log: list):
    """An encoder's `choose` hook that codes the argmax path and logs the samples coded."""
    def choose(window, number, valid_samples, span):
        log.append(window[CONTEXT * HOP:CONTEXT * HOP + valid_samples].copy())
        return codec.model.encode_window(window, span)
    return choose


def test_phase_search_streams_raw_and_from_pipes(tiny_weights, speech, judge):
    searching = ClariCodec(tiny_weights, phase_search=True)
    signal = speech_signal(searching, speech)
    signal = np.concatenate([signal, np.zeros(1000, np.float32)])
    judge["choices"] = [1]
    whole = read_stream(searching.encode(signal, 16000)).indices
    streamed = read_stream(b"".join(searching.encode_blocks([signal[:5000], signal[5000:]], known_length=False)))
    raw = b"".join(searching.encode_blocks([signal], raw=True))
    assert streamed.indices == whole and list(raw) == whole
    with pytest.raises(ValueError, match="phrase by phrase"):
        ClariCodec(tiny_weights, phase_search=True, phrases=False)


def test_session_26_lead_flag_still_decodes_in_place(tiny_codec, speech):
    lead = Header(mode=1, model_id=MODEL_ID, num_samples=640 * 10, lead=True)
    assert encode_header(lead)[3] == FLAG_LEAD
    assert decode_header(encode_header(lead))[0] == lead
    assert (lead.num_frames, lead.lead_samples) == (11, 320)  # 320 + 6400 samples need 11 frames
    signal = speech_signal(tiny_codec, speech)
    n = len(signal)
    codes = as_file(tiny_codec, np.concatenate([np.zeros(320, np.float32), signal]))
    header = Header(mode=1, model_id=tiny_codec.model_id, num_samples=n, lead=True)
    data = write_stream(header, codes.tolist())
    heard = tiny_codec.model.decode(codes)
    decoded, _ = tiny_codec.decode(data)
    assert len(decoded) == n
    np.testing.assert_allclose(decoded, heard[320:320 + n], atol=1e-6)


def test_pick_phase_prefers_the_closer_signal_and_keeps_the_first_on_ties():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    original = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    noisy = original + 0.2 * rng.standard_normal(len(original)).astype(np.float32)
    assert claricodec.phase.pick_phase(original, [noisy, original]) == 1
    assert claricodec.phase.pick_phase(original, [original, noisy]) == 0
    assert claricodec.phase.pick_phase(original, [original, original.copy()]) == 0


def test_cli_phase_search_deterministic_with_real_judge_from_files_and_pipes(weights_env, speech, tmp_path):
    audio, rate = speech
    wav = tmp_path / "in.wav"
    sf.write(wav, audio, rate)
    runner = CliRunner()
    outs = []
    for name in ("a.cc", "b.cc"):
        result = runner.invoke(main, ["encode", "--phase-search", str(wav), str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "phase search: " in result.stderr and " of 1 phrases sent 20 ms later" in result.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    result = runner.invoke(main, ["decode", str(tmp_path / "a.cc"), str(tmp_path / "out.wav")])
    assert result.exit_code == 0, result.output
    decoded, out_rate = sf.read(tmp_path / "out.wav")
    assert out_rate == 16000 and len(decoded) == read_stream(outs[0]).header.num_samples
    result = runner.invoke(main, ["encode", "--phase-search", "-", str(tmp_path / "c.cc")],
                           input=wav.read_bytes())
    assert result.exit_code == 0, result.output
    assert read_stream((tmp_path / "c.cc").read_bytes()).indices == read_stream(outs[0]).indices
    result = runner.invoke(main, ["encode", "--phase-search", "--fixed-windows", str(wav), str(tmp_path / "d.cc")])
    assert result.exit_code != 0 and "--phase-search" in result.output and not (tmp_path / "d.cc").exists()


def test_every_judge_of_the_phase_judges_probe_prefers_the_closer_coding():
    from conftest import load_bench
    judges = load_bench("phase_judges").judges
    rng = np.random.default_rng(0)
    original = rng.standard_normal((50, 384)).astype(np.float32)
    far = original + 1.0 * rng.standard_normal(original.shape).astype(np.float32)
    close = original + 0.3 * rng.standard_normal(original.shape).astype(np.float32)
    level = rng.uniform(-80, 0, 50)
    for order, expected in (((far, close), 1), ((close, far), 0)):
        for name, score in judges(np.stack([original, *order]), level).items():
            assert score.shape == (2,) and int(np.argmax(score)) == expected, name


def test_a_silent_phrase_is_sent_as_silence_and_the_next_phrase_delayed_after_it(tiny_codec, speech, judge):
    one = speech_signal(tiny_codec, speech)[:4 * 16000]
    hiss = (1e-5 * np.random.default_rng(1).standard_normal(12 * 16000)).astype(np.float32)  # -100 dBFS
    signal = np.concatenate([one, hiss, one, hiss[:8000]])  # ends in a pause: the last phrase may be delayed
    judge["choices"] = [1]  # the delayed phase wherever it may be tried
    coded = []
    encoder = PhasedEncoder(tiny_codec.model, choose=recording(tiny_codec, coded))
    codes = encode_all(encoder, signal)
    assert len(codes) == -(-len(signal) // HOP)
    assert np.all(codes[150:350] == tiny_codec.model.silence_code)  # the gap: frames 100-400
    assert 320 in encoder.chosen and len(encoder.chosen) < 5  # only the phrases with sound were coded
    # Each coding is a stretch of the signal (with 320 zeros before it), a delayed one
    # starting with what came just before its phrase, though a silent phrase came before.
    padded = np.concatenate([np.zeros(320, np.float32), signal])
    starts = []
    for samples in coded:
        starts.append(next(s for s in np.flatnonzero(padded == samples[0])
                           if np.array_equal(padded[s:s + len(samples)], samples)))
    delayed = [start for start in starts if start % HOP == 0]  # as it is: 320 past a frame's start
    assert max(delayed) > 300 * HOP  # a phrase after the gap, delayed by the hiss before it
