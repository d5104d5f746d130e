"""Golden files: the shipped weights must encode the bundled clip to exactly these bytes.

A failure means the encoder's output changed (weights, front end, windowing or rounding).
If that was intended (new weights), regenerate with tests/golden/make_golden.py, and keep
the old hello.cc as hello-<old model id>.cc for the legacy-decoder test.

Until session 17 the Whisper front ran CTranslate2 in int8, whose kernels round differently
on different CPUs (AVX-512 VNNI vs AVX2 alone: 22 of the clip's 145 codes), so each kind of
CPU needed its own golden file. In float32 the codes agree even between CTranslate2 and
torch, and with one thread or two. Should a kind of CPU still disagree, make_golden.py
--variant NAME writes hello.NAME.cc, and encoding must equal one variant exactly.
"""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from claricodec import bitstream
from claricodec.api import ClariCodec
from claricodec.weights_manifest import default_weights_dir, read_manifest

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"


@pytest.fixture(scope="module")
def shipped():
    return ClariCodec()


@pytest.fixture(scope="module")
def clip():
    return sf.read(HERE / "data" / "hello.wav", dtype="float32")


# hello.cc, plus hello.NAME.cc for a kind of CPU that encodes otherwise (see the docstring)
CPU_VARIANTS = ["hello.cc"] + sorted(p.name for p in GOLDEN.glob("hello.*.cc")
                                     if not p.name.endswith(".crc.cc"))


def test_encoding_matches_golden_bytes(shipped, clip):
    encoded = shipped.encode(*clip)
    matches = [name for name in CPU_VARIANTS if encoded == (GOLDEN / name).read_bytes()]
    assert len(matches) == 1, ("encoding the hello clip matches no golden file: the encoder "
                               "changed, or this kind of CPU needs its own (make_golden.py --variant)")
    crc_name = matches[0].replace(".cc", ".crc.cc")
    assert shipped.encode(*clip, block_crc=True) == (GOLDEN / crc_name).read_bytes()


def test_mode2_golden_file_holds_the_same_codes_in_fewer_bytes(shipped, clip):
    data = (GOLDEN / "hello-mode2.cc").read_bytes()
    assert shipped.encode(*clip, mode=2) == data
    fixed = bitstream.read_stream((GOLDEN / "hello.cc").read_bytes())
    coded = bitstream.read_stream(data)
    assert coded.header.mode == 2 and coded.header.model_id == fixed.header.model_id
    assert coded.indices == fixed.indices
    assert len(data) < len((GOLDEN / "hello.cc").read_bytes())
    assert np.array_equal(shipped.decode(data)[0], shipped.decode((GOLDEN / "hello.cc").read_bytes())[0])


@pytest.mark.parametrize("variant", CPU_VARIANTS[1:])  # none while every CPU agrees
def test_a_cpu_variant_shares_header_and_most_codes(variant):
    main, other = (bitstream.read_stream((GOLDEN / name).read_bytes())
                   for name in ("hello.cc", variant))
    assert main.header.model_id == other.header.model_id  # the same weights made them
    assert len(main.indices) == len(other.indices)
    same = np.mean(np.asarray(main.indices) == np.asarray(other.indices))
    assert same > 0.7  # rounding moves a few codes; other weights would move nearly all


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


# Every decoder the shipped weights keep for earlier files must have its golden file.
LEGACY_IDS = list(read_manifest(default_weights_dir()).get("legacy_decoders", {}))


@pytest.mark.parametrize("old_id", LEGACY_IDS)
def test_a_file_made_with_earlier_weights_still_decodes(shipped, clip, old_id):
    # hello-<id>.cc is the golden file of weights shipped earlier; their decoders travel in
    # weights/legacy/, so the receiver's upgrade does not strand them.
    data = (GOLDEN / f"hello-{old_id}.cc").read_bytes()
    header = bitstream.read_stream(data).header
    assert header.model_id.hex() == old_id != shipped.model_id.hex()
    audio, rate = shipped.decode(data)
    assert rate == 16000 and len(audio) == len(clip[0]) and np.isfinite(audio).all()
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not silence
    current, _ = shipped.decode((GOLDEN / "hello.cc").read_bytes())
    assert not np.allclose(audio, current)  # its own decoder, not the current one
