"""Regenerate the golden .cc files after the shipped weights change:

    python tests/golden/make_golden.py

Copy the old hello.cc to hello-<its model id>.cc first: the shipped weights keep the old
decoder (weights/legacy/), and a test decodes that file with them.

The golden test then checks that encoding is bit-exact against them, and the file's header
records which weights (model id) made it.
"""
from pathlib import Path

import soundfile as sf

from claricodec.api import ClariCodec

HERE = Path(__file__).parent
CLIPS = {"hello.cc": HERE.parent / "data" / "hello.wav"}

if __name__ == "__main__":
    codec = ClariCodec()
    for name, wav in CLIPS.items():
        audio, rate = sf.read(wav, dtype="float32")
        (HERE / name).write_bytes(codec.encode(audio, rate))
        (HERE / name.replace(".cc", ".crc.cc")).write_bytes(codec.encode(audio, rate, block_crc=True))
        print("wrote", HERE / name)
