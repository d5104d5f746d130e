"""Golden files: the shipped weights must encode the bundled clip to exactly these bytes.

A failure means the encoder's output changed (weights, front end, windowing or rounding).
If that was intended (new weights), regenerate with tests/golden/make_golden.py, and keep
the old hello.cc as hello-<old model id>.cc for the legacy-decoder test.
"""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from claricodec import bitstream
from claricodec.api import ClariCodec

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


@pytest.fixture(scope="module")
def shipped():
    return ClariCodec()


@pytest.fixture(scope="module")
def clip():
    return sf.read(HERE / "data" / "hello.wav", dtype="float32")


def test_encoding_matches_golden_bytes(shipped, clip):
    assert shipped.encode(*clip) == (GOLDEN / "hello.cc").read_bytes()
    assert shipped.encode(*clip, block_crc=True) == (GOLDEN / "hello.crc.cc").read_bytes()


def test_golden_file_header_and_decode(shipped, clip):
    data = (GOLDEN / "hello.cc").read_bytes()
    stream = bitstream.read_stream(data)
    assert stream.header.model_id == shipped.model_id
    assert stream.header.num_samples == len(clip[0])
    assert len(data) == 12 + len(stream.indices)
    audio, rate = shipped.decode(data)
    assert rate == 16000 and len(audio) == len(clip[0]) and np.isfinite(audio).all()
    with_crc, _ = shipped.decode((GOLDEN / "hello.crc.cc").read_bytes())
    assert np.array_equal(with_crc, audio)


@pytest.mark.parametrize("old_id", ["557c8f7f", "08b1c059", "01e76600"])
def test_a_file_made_with_earlier_weights_still_decodes(shipped, clip, old_id):
    # hello-<id>.cc is the golden file of weights shipped earlier (557c8f7f, 08b1c059, 01e76600);
    # their decoders travel in weights/legacy/, so the receiver's upgrade does not strand them.
    data = (GOLDEN / f"hello-{old_id}.cc").read_bytes()
    header = bitstream.read_stream(data).header
    assert header.model_id.hex() == old_id != shipped.model_id.hex()
    audio, rate = shipped.decode(data)
    assert rate == 16000 and len(audio) == len(clip[0]) and np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not silence
    current, _ = shipped.decode((GOLDEN / "hello.cc").read_bytes())
    assert not np.allclose(audio, current)  # its own decoder, not the current one
