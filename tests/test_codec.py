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
