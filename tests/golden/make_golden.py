"""Regenerate the golden .cc files after the shipped weights change:

    python tests/golden/make_golden.py

Copy the old hello.cc to hello-<its model id>.cc first: the shipped weights keep the old
decoder (weights/legacy/), and a test decodes that file with them.

The golden test then checks that encoding is bit-exact against them, and the file's header
records which weights (model id) made it.

With the Whisper front in float32 (since session 17) the bytes should not depend on the
CPU; in int8 they did (AVX-512 VNNI vs AVX2 moved 15 % of the hello clip's codes). Should a
kind of CPU still encode otherwise, `--variant NAME` writes hello.NAME.cc (and .crc.cc)
for it; the test accepts any one variant exactly. Regenerate every variant on its kind of
CPU when the weights change (or the encoding, as in session 21: the head reads only the
file's own frames). hello.cc: an AMD EPYC with AVX2 and no AVX-512, session 21.
hello-mode2.cc: the same codes in mode 2 (entropy-coded), session 22.
"""
import sys
from pathlib import Path

import soundfile as sf

from claricodec.api import ClariCodec

HERE = Path(__file__).parent
CLIPS = {"hello.cc": HERE.parent / "data" / "hello.wav"}

if __name__ == "__main__":
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else None
    codec = ClariCodec()
    for name, wav in CLIPS.items():
        audio, rate = sf.read(wav, dtype="float32")
        if variant:
            name = name.replace(".cc", f".{variant}.cc")
        (HERE / name).write_bytes(codec.encode(audio, rate))
        (HERE / name.replace(".cc", ".crc.cc")).write_bytes(codec.encode(audio, rate, block_crc=True))
        (HERE / name.replace(".cc", "-mode2.cc")).write_bytes(codec.encode(audio, rate, mode=2))
        print("wrote", HERE / name)
