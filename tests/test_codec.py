"""Windowed inference: codes must not depend on how the audio was fed."""
import numpy as np
import pytest

from claricodec.codec import CONTEXT, WINDOW, WindowedDecoder, WindowedEncoder


@pytest.fixture(scope="module")
def model(tiny_codec):
    return tiny_codec.model


def test_frame_count_is_ceil_of_samples_over_hop(model):
    for n in (1, 639, 640, 641, 16000):
        assert len(model.encode(np.zeros(n, np.float32) + 0.01)) == -(-n // 640)


@pytest.mark.parametrize("piece", [1, 777, 640 * 250, 10 ** 6])
def test_codes_do_not_depend_on_read_size(model, piece):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(640 * (2 * WINDOW + 37) + 123) * 0.1).astype(np.float32)
    whole = model.encode(audio)
    stream = WindowedEncoder(model)
    parts = [stream.push(audio[i:i + piece]) for i in range(0, len(audio), piece)]
    parts.append(stream.finish())
    assert np.array_equal(np.concatenate(parts), whole)


def test_audio_beyond_the_context_does_not_change_codes(model):
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(640 * WINDOW * 2) * 0.1).astype(np.float32)
    base = model.encode(audio)
    changed = audio.copy()
    changed[640 * (WINDOW + CONTEXT + 1):] = 0.0  # past the first window's right context
    assert np.array_equal(model.encode(changed)[:WINDOW], base[:WINDOW])
    assert not np.array_equal(model.encode(changed), base)  # the codes do see the audio


def test_decode_length_and_window_seams(model):
    indices = np.random.default_rng(2).integers(0, 256, WINDOW * 2 + 5)
    audio = model.decode(indices)
    assert audio.shape == (len(indices) * 640,)
    assert np.isfinite(audio).all()


def test_streamed_decoding_equals_whole_decoding(model):
    indices = np.random.default_rng(3).integers(0, 256, WINDOW * 3 + 17)
    whole = model.decode(indices)
    stream = WindowedDecoder(model)
    parts = [stream.push(indices[i:i + 33]) for i in range(0, len(indices), 33)] + [stream.finish()]
    assert np.array_equal(np.concatenate(parts), whole)


def test_erased_frames_repeat_the_last_good_frame(model):
    indices = np.array([5, 6, 7, 8, 9] * 20)
    erased = np.zeros(len(indices), bool)
    erased[[0, 2, 3]] = True
    concealed = np.array([6, 6, 6, 6, 9] + [5, 6, 7, 8, 9] * 19)
    assert np.array_equal(model.decode(indices, erased), model.decode(concealed))
    all_lost = model.decode(indices[:10], np.ones(10, bool))
    assert all_lost.shape == (6400,) and np.isfinite(all_lost).all()


# --- phrases: a signal over one window, cut at its pauses (PhraseEncoder) ----------------

def speech_like(rng, frames: int) -> np.ndarray:
    return (rng.standard_normal(640 * frames) * 0.1).astype(np.float32)


def test_a_phrase_ends_in_the_middle_of_its_first_pause_past_two_seconds():
    from claricodec.codec import MIN_PHRASE, phrase_frames
    rng = np.random.default_rng(4)
    quiet = np.zeros(640 * 10, np.float32)  # 10 frames of silence
    early, late = speech_like(rng, 30), speech_like(rng, 80)
    # A pause before 2 s is no cut; the first one past it is cut in its middle.
    audio = np.concatenate([early, quiet, late, quiet, speech_like(rng, 250)])[:640 * WINDOW]
    assert phrase_frames(audio, 640, last=False) == 30 + 10 + 80 + 5
    # No pause: a phrase that is not the last ends at its quietest frame past 2 s ...
    flat = speech_like(rng, WINDOW)
    flat[640 * 129:640 * 132] *= 0.01  # frames 129-131: quietest in the middle (levels are 3-frame means)
    assert phrase_frames(flat, 640, last=False) == 131
    # ... and the last takes all that is left, a part frame too.
    assert phrase_frames(flat[:640 * 140 + 7], 640, last=True) == 141
    assert phrase_frames(flat[:640 * (MIN_PHRASE - 1)], 640, last=True) == MIN_PHRASE - 1


def test_no_phrase_is_longer_than_six_seconds():
    from claricodec.codec import MAX_PHRASE, phrase_frames
    rng = np.random.default_rng(7)
    quiet = np.zeros(640 * 10, np.float32)
    # The first pause past 2 s ends after 6 s: not waited for; the quietest frame before is cut.
    audio = np.concatenate([speech_like(rng, 170), quiet, speech_like(rng, 70)])
    audio[640 * 99:640 * 102] *= 0.01
    assert MAX_PHRASE == 150
    assert phrase_frames(audio, 640, last=False) == 101
    assert phrase_frames(audio, 640, last=True) == 101  # the last phrase too, when it is longer
    assert phrase_frames(audio, 640, last=False, max_phrase=WINDOW) == 175  # the 10 s cap: the pause
    # A pause that starts before 6 s and runs past it is cut where the cap ends it.
    audio = np.concatenate([speech_like(rng, 140), quiet, speech_like(rng, 100)])
    assert phrase_frames(audio, 640, last=False) == 150 - 5


def test_the_first_long_pause_is_cut_and_else_the_longest():
    from claricodec.codec import phrase_frames
    rng = np.random.default_rng(5)

    def pause(frames):
        return np.zeros(640 * frames, np.float32)

    # Pauses of 6 frames (ending at 66) and 15 frames (ending at 165).
    audio = np.concatenate([speech_like(rng, 60), pause(6), speech_like(rng, 84), pause(15),
                            speech_like(rng, 200)])[:640 * WINDOW]
    assert phrase_frames(audio, 640, False, long_pause=5) == 66 - 3  # the first pause
    assert phrase_frames(audio, 640, False, long_pause=12, max_phrase=WINDOW) == 165 - 7  # the first long one
    assert phrase_frames(audio, 640, False, long_pause=20, max_phrase=WINDOW) == 165 - 7  # none long: the longest
    # Equals: the first of them.
    audio = np.concatenate([speech_like(rng, 60), pause(8), speech_like(rng, 82), pause(8),
                            speech_like(rng, 200)])[:640 * WINDOW]
    assert phrase_frames(audio, 640, False, long_pause=12, max_phrase=WINDOW) == 68 - 4
    assert phrase_frames(audio, 640, True, long_pause=12, max_phrase=WINDOW) == 68 - 4


def test_phrases_are_encoded_as_files_of_their_own_and_short_signals_as_before(model):
    from claricodec.codec import PhraseEncoder
    hop = 640
    seen = []

    def choose(window, number, valid, span):  # records each window; codes that tell them apart
        seen.append((window.copy(), number, valid, span))
        return (np.arange(WINDOW) + 7 * number) % 256

    def encode(audio, piece=10 ** 7):
        seen.clear()
        encoder = PhraseEncoder(model, choose)
        parts = [encoder.push(audio[i:i + piece]) for i in range(0, len(audio), piece)]
        return np.concatenate(parts + [encoder.finish()])

    rng = np.random.default_rng(5)
    short = speech_like(rng, 200)[:-100]
    assert np.array_equal(encode(short), np.arange(200))  # one window, as WindowedEncoder makes it
    plain = WindowedEncoder(model, lambda *args: seen.append(args) or np.zeros(WINDOW, np.int64))
    plain.push(short), plain.finish()
    (phrase_window, *phrase_rest), (window, *rest) = seen
    assert np.array_equal(phrase_window, window) and phrase_rest == rest
    pause = np.zeros(hop * 10, np.float32)
    audio = np.concatenate([speech_like(rng, 120), pause, speech_like(rng, 130), pause,
                            speech_like(rng, 140)[:-100]])
    codes = encode(audio)
    cuts = [0, 125, 125 + 5 + 130 + 5, -(-len(audio) // hop)]  # in the pauses' middles
    assert len(seen) == 3 and len(codes) == cuts[-1]
    for number, (window, got_number, valid, span) in enumerate(seen):
        first, end = cuts[number], cuts[number + 1]
        phrase = audio[first * hop:end * hop]
        want = np.zeros((2 * CONTEXT + WINDOW) * hop, np.float32)  # zeros either side, as a file
        want[CONTEXT * hop:CONTEXT * hop + len(phrase)] = phrase
        assert np.array_equal(window, want)
        assert (got_number, valid, span) == (number, len(phrase), (CONTEXT, CONTEXT + end - first))
        assert np.array_equal(codes[first:end], (np.arange(end - first) + 7 * number) % 256)
    for piece in (1000, hop * 250, hop * 251 + 3):  # any read size: the same cuts, the same codes
        assert np.array_equal(encode(audio, piece), codes)


def test_the_api_encodes_phrase_by_phrase_unless_told_otherwise(tiny_weights, monkeypatch):
    import claricodec.api
    from claricodec.api import ClariCodec
    from claricodec.codec import PhraseEncoder
    used = []
    monkeypatch.setattr(claricodec.api, "PhraseEncoder", lambda *a: used.append("phrases") or PhraseEncoder(*a))
    monkeypatch.setattr(claricodec.api, "WindowedEncoder", lambda *a: used.append("fixed") or WindowedEncoder(*a))
    audio = speech_like(np.random.default_rng(6), 300)
    ClariCodec(tiny_weights).encode(audio, 16000)
    ClariCodec(tiny_weights, phrases=False).encode(audio, 16000)
    assert used == ["phrases", "fixed"]


def test_cli_encodes_long_files_phrase_by_phrase_unless_told_fixed_windows(weights_env, tmp_path, monkeypatch):
    import soundfile as sf
    from click.testing import CliRunner

    import claricodec.api
    from claricodec.cli.main import main
    used = []
    real = claricodec.api.ClariCodec.__init__

    def spy(self, *args, **kwargs):
        used.append(kwargs.get("phrases", True))
        real(self, *args, **kwargs)

    monkeypatch.setattr(claricodec.api.ClariCodec, "__init__", spy)
    wav = tmp_path / "long.wav"
    sf.write(wav, speech_like(np.random.default_rng(7), 300), 16000)
    for flag in ([], ["--fixed-windows"]):
        result = CliRunner().invoke(main, ["encode", *flag, str(wav), str(tmp_path / "x.cc"), "--force"])
        assert result.exit_code == 0, result.output
    assert used == [True, False]


def test_the_cut_count_tells_cuts_between_utterances_from_cuts_inside_one():
    from conftest import load_bench
    bench = load_bench("phrase_cuts")
    rng = np.random.default_rng(6)
    # Three "utterances" of 3 s, 4 s (with a 240 ms pause in it) and 3 s, 600 ms apart.
    gap = np.zeros(640 * 15, np.float32)
    second = np.concatenate([speech_like(rng, 40), np.zeros(640 * 6, np.float32), speech_like(rng, 54)])
    pieces = [speech_like(rng, 75), gap, second, gap, speech_like(rng, 75)]
    signal = np.concatenate(pieces)
    starts = np.cumsum([0] + [len(p) for p in pieces])
    spans = [(starts[0], starts[1]), (starts[2], starts[3]), (starts[4], starts[5])]
    # The shipped rule cuts in the second utterance's short pause; waiting for 480 ms does not.
    shipped = bench.tally(spans, bench.cuts(signal, (5, 50), 640))
    assert shipped == {"cuts": 3, "inside": 1, "alone": 2, "sharing": 0, "split": 1}
    patient = bench.tally(spans, bench.cuts(signal, (12, 50), 640))
    assert patient == {"cuts": 2, "inside": 0, "alone": 3, "sharing": 0, "split": 0}
    # A cut in a recording's own leading silence is between utterances once spans are trimmed.
    padded = np.concatenate([np.zeros(640 * 4, np.float32), speech_like(rng, 30)])
    assert bench.speech_spans(padded, [(0, len(padded))], 640) == [(640 * 4, len(padded))]


# --- silence: a phrase with no speech is sent as the silence code -------------------------

def encode_phrases(model, audio, piece=10 ** 7):
    from claricodec.codec import PhraseEncoder
    encoder = PhraseEncoder(model)
    parts = [encoder.push(audio[i:i + piece]) for i in range(0, len(audio), piece)]
    return np.concatenate(parts + [encoder.finish()])


@pytest.fixture
def without_silence_code(model):
    code = model.silence_code
    model.silence_code = None
    yield code
    model.silence_code = code


def test_a_long_gap_is_sent_as_the_silence_code_and_the_speech_around_it_as_before(model):
    rng = np.random.default_rng(8)
    room = (rng.standard_normal(640 * 400) * 10 ** (-70 / 20)).astype(np.float32)  # 16 s, 50 dB under the speech
    audio = np.concatenate([speech_like(rng, 120), room, speech_like(rng, 120)])
    silence = model.silence_code
    assert silence is not None  # export_weights names it
    codes = encode_phrases(model, audio)
    model.silence_code = None
    try:
        before = encode_phrases(model, audio)  # the same signal, silent phrases coded like any other
    finally:
        model.silence_code = silence
    changed = codes != before
    assert changed.sum() > 250 and np.all(codes[changed] == silence)
    assert np.all(codes[140:350] == silence)  # the gap's middle, whichever phrases it was cut into
    assert np.array_equal(codes[:120], before[:120]) and np.array_equal(codes[520:], before[520:])
    for piece in (1000, 640 * 250 + 3):  # any read size: the same codes
        assert np.array_equal(encode_phrases(model, audio, piece), codes)


def test_a_file_is_silence_only_below_the_floor_when_nothing_louder_is_around(model, without_silence_code):
    silence = without_silence_code
    rng = np.random.default_rng(9)
    hiss = (rng.standard_normal(640 * 100) * 10 ** (-70 / 20)).astype(np.float32)
    coded_as_any = encode_phrases(model, hiss)
    model.silence_code = silence
    assert np.all(encode_phrases(model, np.zeros(640 * 100, np.float32)) == silence)  # digital silence
    assert np.all(encode_phrases(model, hiss * 0.01) == silence)  # -110 dBFS: under the floor
    # A quiet file alone (-70 dBFS) may be quiet speech: coded as it is.
    assert np.array_equal(encode_phrases(model, hiss), coded_as_any)


def test_the_manifest_silence_code_must_be_a_code(tiny_weights, tmp_path):
    import json
    import shutil

    from claricodec.weights import WeightsError, load_codec
    weights = tmp_path / "w"
    shutil.copytree(tiny_weights, weights)
    manifest = json.loads((weights / "manifest.json").read_text())
    codec, _ = load_codec(weights)
    assert codec.silence_code == manifest["silence_code"] == codec.quietest_code()[0]
    for bad in (256, -1, "130"):
        (weights / "manifest.json").write_text(json.dumps(dict(manifest, silence_code=bad)))
        with pytest.raises(WeightsError, match="silence_code"):
            load_codec(weights)
    del manifest["silence_code"]  # weights from before session 29: no silence code, none sent
    (weights / "manifest.json").write_text(json.dumps(manifest))
    assert load_codec(weights)[0].silence_code is None


def test_steady_noise_well_below_the_speech_is_silent_and_speech_in_noise_is_not():
    from claricodec.codec import is_silent
    rng = np.random.default_rng(10)
    speech = speech_like(rng, 100)
    speech[640 * 40:640 * 60] *= 0.01  # a pause: speech's level moves by tens of dB
    hiss = (rng.standard_normal(640 * 100) * 10 ** (-45 / 20)).astype(np.float32)
    loud = -20.0  # dB full scale: the loudest frame around (speech_like's level)
    assert is_silent(hiss, 640, loud)  # steady, 25 dB under the speech around it
    assert not is_silent(hiss, 640, -50.0)  # as loud as what is around it: may be speech
    assert not is_silent(hiss[:640 * 9], 640, loud)  # too short to judge its spread
    assert not is_silent(speech, 640, loud)
    assert not is_silent(speech * 0.05, 640, loud)  # speech 26 dB under the loudest: its level still moves
    assert not is_silent(speech + hiss * 10, 640, loud)  # speech in noise at ~5 dB SNR
    assert is_silent(speech * 10 ** (-50 / 20), 640, loud)  # anything 45 dB under
    assert is_silent(np.zeros(640 * 20, np.float32), 640, -120.0)  # under the floor, nothing around
    # Right after a silent phrase: steady and at most 3 dB louder goes on being silent,
    # even with nothing louder around any more (a pause longer than the 30 s remembered).
    assert is_silent(hiss, 640, -45.0, silence_db=-44.0)
    assert not is_silent(hiss * 2, 640, -45.0, silence_db=-44.0)  # 6 dB louder: something new
    assert not is_silent(speech * 0.01, 640, -45.0, silence_db=-44.0)  # not steady


def test_a_pause_longer_than_the_remembered_30_s_stays_silent(model):
    rng = np.random.default_rng(11)
    hiss = (rng.standard_normal(640 * 2500) * 10 ** (-45 / 20)).astype(np.float32)  # 100 s
    audio = np.concatenate([speech_like(rng, 120), hiss, speech_like(rng, 120)])
    codes = encode_phrases(model, audio)
    assert np.all(codes[200:2550] == model.silence_code)
