"""Phase search (`encode --phase-search`): the frames moved by half a frame when the judge
prefers it, the header's lead flag, and a decoder that puts every sample back in place."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import claricodec.search
from claricodec.api import ClariCodec
from claricodec.bitstream import FLAG_LEAD, Header, decode_header, encode_header, read_stream
from claricodec.cli.main import main
from claricodec.codec import WindowedDecoder, WindowedEncoder

MODEL_ID = bytes.fromhex("0a0b0c0d")


def test_the_lead_flag_round_trips_and_its_frames_cover_the_extra_half_frame():
    plain = Header(mode=1, model_id=MODEL_ID, num_samples=640 * 10)
    lead = Header(mode=1, model_id=MODEL_ID, num_samples=640 * 10, lead=True)
    assert encode_header(lead)[3] == FLAG_LEAD and encode_header(plain)[3] == 0
    assert decode_header(encode_header(lead))[0] == lead
    assert (plain.num_frames, plain.lead_samples) == (10, 0)
    assert (lead.num_frames, lead.lead_samples) == (11, 320)  # 320 + 6400 samples need 11 frames
    both = Header(mode=1, model_id=MODEL_ID, num_samples=7, block_crc=True, lead=True)
    assert decode_header(encode_header(both))[0] == both


@pytest.fixture
def judge(monkeypatch):
    """pick_phase scripted: the phase index to choose, and what it was shown."""
    seen = {}

    def pick(original, decoded, states=None):
        seen["shown"] = (original, decoded)
        return seen["choice"]

    monkeypatch.setattr(claricodec.search, "pick_phase", pick)
    return seen


def codes_and_audio(codec: ClariCodec, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    encoder = WindowedEncoder(codec.model)
    codes = np.concatenate([encoder.push(signal), encoder.finish()])
    decoder = WindowedDecoder(codec.model)
    return codes, np.concatenate([decoder.push(codes), decoder.finish()])


def test_the_judges_choice_is_sent_and_decoded_in_place(tiny_weights, speech, judge):
    audio, rate = speech
    plain = ClariCodec(tiny_weights)
    searching = ClariCodec(tiny_weights, phase_search=True)
    signal = plain.decode(plain.encode(audio, rate))[0]  # any 16 kHz signal
    n = len(signal)

    judge["choice"] = 0  # as it is: the same bytes as without the search
    assert searching.encode(signal, 16000) == plain.encode(signal, 16000)
    original, shown = judge["shown"]
    assert np.array_equal(original, signal) and [len(s) for s in shown] == [n, n]

    judge["choice"] = 1  # half a frame of silence first
    data = searching.encode(signal, 16000)
    stream = read_stream(data)
    assert stream.header.lead and stream.header.num_samples == n
    codes, heard = codes_and_audio(plain, np.concatenate([np.zeros(320, np.float32), signal]))
    assert stream.indices == codes.tolist()
    assert np.array_equal(judge["shown"][1][1], heard[320:320 + n])
    decoded, _ = plain.decode(data)  # any decoder of this version drops the 320 samples
    assert len(decoded) == n
    np.testing.assert_allclose(decoded, heard[320:320 + n], atol=1e-6)
    assert read_stream(searching.encode(signal, 16000, mode=2)).header.lead  # mode 2 carries it too
    assert np.allclose(plain.decode(searching.encode(signal, 16000, mode=2))[0], decoded, atol=1e-6)


def test_phase_search_needs_a_header_and_the_whole_signal(tiny_weights):
    searching = ClariCodec(tiny_weights, phase_search=True)
    pcm = np.zeros(16000, np.float32)
    with pytest.raises(ValueError, match="phase search"):
        b"".join(searching.encode_blocks([pcm], raw=True))
    with pytest.raises(ValueError, match="phase search"):
        b"".join(searching.encode_blocks([pcm], known_length=False))


def test_pick_phase_prefers_the_closer_signal_and_keeps_the_first_on_ties():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    original = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    noisy = original + 0.2 * rng.standard_normal(len(original)).astype(np.float32)
    assert claricodec.search.pick_phase(original, [noisy, original]) == 1
    assert claricodec.search.pick_phase(original, [original, noisy]) == 0
    assert claricodec.search.pick_phase(original, [original, original.copy()]) == 0


def test_cli_phase_search_deterministic_with_real_judge_and_refuses_pipes_and_raw(weights_env, speech, tmp_path):
    audio, rate = speech
    wav = tmp_path / "in.wav"
    sf.write(wav, audio, rate)
    runner = CliRunner()
    outs = []
    for name in ("a.cc", "b.cc"):
        result = runner.invoke(main, ["encode", "--phase-search", str(wav), str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    result = runner.invoke(main, ["decode", str(tmp_path / "a.cc"), str(tmp_path / "out.wav")])
    assert result.exit_code == 0, result.output
    decoded, out_rate = sf.read(tmp_path / "out.wav")
    assert out_rate == 16000 and len(decoded) == read_stream(outs[0]).header.num_samples
    info = runner.invoke(main, ["info", str(tmp_path / "a.cc")])
    assert info.exit_code == 0 and ("lead:" in info.output) == read_stream(outs[0]).header.lead
    for args in (["-", str(tmp_path / "c.cc")], ["--raw", str(wav), str(tmp_path / "d.raw")]):
        result = runner.invoke(main, ["encode", "--phase-search", *args], input=wav.read_bytes())
        assert result.exit_code != 0 and "--phase-search" in result.output
        assert not (tmp_path / "c.cc").exists() and not (tmp_path / "d.raw").exists()
