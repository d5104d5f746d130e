"""The frozen mode table: what a mode id in a .cc header means.

Rows are only ever added. A mode id, once shipped, keeps its meaning forever, because
files written with it must keep decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod


@dataclass(frozen=True)
class Mode:
    id: int
    sample_rate: int  # Hz, of the codec's internal audio
    hop: int  # samples per frame
    levels: tuple[int, ...]  # FSQ levels per latent dimension, most significant first
    # None: each frame is its index in bits_per_frame bits. A name: the frames are
    # arithmetic-coded with that frozen context table (entropy.py), so the rate varies.
    context_table: str | None = None

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def codebook_size(self) -> int:
        return prod(self.levels)

    @property
    def bits_per_frame(self) -> int:
        return (self.codebook_size - 1).bit_length()

    @property
    def bit_rate(self) -> float:
        """Payload bit rate, headers and CRCs excluded (for an entropy-coded mode, the most
        a frame of the fixed-rate mode with the same codes costs, not what it sends)."""
        return self.frame_rate * self.bits_per_frame

    @property
    def entropy_coded(self) -> bool:
        return self.context_table is not None

    def same_codes(self, other: "Mode") -> bool:
        """Whether the two modes carry the same codes (one decoder reads both)."""
        return (self.sample_rate, self.hop, self.levels) == (other.sample_rate, other.hop, other.levels)


MODES: dict[int, Mode] = {
    # Mode 1: 16 kHz, 25 frames/s, 4 dims x 4 levels = 8 bits/frame = 200 bit/s.
    1: Mode(id=1, sample_rate=16000, hop=640, levels=(4, 4, 4, 4)),
    # Mode 2: mode 1's codes, arithmetic-coded with the context-v1 table (which code
    # follows which): ~6.4 bits a frame on average, ~165 bit/s, variable; no CRC blocks.
    2: Mode(id=2, sample_rate=16000, hop=640, levels=(4, 4, 4, 4), context_table="context-v1"),
}
DEFAULT_MODE = 1


def get_mode(mode_id: int) -> Mode:
    try:
        return MODES[mode_id]
    except KeyError:
        raise ValueError(f"unknown mode {mode_id} (known: {sorted(MODES)})") from None
