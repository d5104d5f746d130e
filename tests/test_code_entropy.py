"""bench/code_entropy.py: the bits a frame codes would need with an entropy coder, and
content_ceiling.py's content-only codes of other shapes."""
from __future__ import annotations

import torch

from conftest import load_bench

LEVELS = (4, 4, 4, 4)


def sequences(count: int, length: int, gen: torch.Generator, predictable: bool) -> list[torch.Tensor]:
    """Level indices [length, 4]: one random code held for the whole sequence, or uniform noise."""
    radix = torch.tensor([64, 16, 4, 1])
    out = []
    for _ in range(count):
        if predictable:
            index = torch.randint(0, 256, (1,), generator=gen).expand(length)
        else:
            index = torch.randint(0, 256, (length,), generator=gen)
        out.append((index[:, None] // radix) % 4)
    return out


def test_context_model_prices_predictable_codes_far_below_noise():
    bench = load_bench("code_entropy")
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    held = sequences(256, 40, gen, predictable=True)
    noise = sequences(256, 40, gen, predictable=False)
    # Codes are about equally frequent in both, so frequencies alone price both near 8 bits.
    assert bench.unigram_bits(held[:192], held[192:], LEVELS) > 7
    assert bench.unigram_bits(noise[:192], noise[192:], LEVELS) > 7
    # A model of the sequence learns that a code is held (8 bits for the first frame, then
    # next to nothing); noise stays at about 8 bits a frame.
    assert bench.context_bits(held[:192], held[192:], LEVELS, steps=100, batch=16) < 2
    assert bench.context_bits(noise[:192], noise[192:], LEVELS, steps=100, batch=16) > 7.5


def test_context_model_sees_only_earlier_frames():
    bench = load_bench("code_entropy")
    torch.manual_seed(0)
    model = bench.ContextModel(LEVELS)
    codes = sequences(1, 12, torch.Generator().manual_seed(1), predictable=False)[0][None]
    changed = codes.clone()
    changed[0, 7] = (changed[0, 7] + 1) % 4
    before, after = model.bits(codes), model.bits(changed)
    assert torch.equal(before[0, :7], after[0, :7])  # frames before the change cost the same
    assert not torch.allclose(before[0, 7:], after[0, 7:])


def test_bottleneck_codes_span_frames_at_the_same_bit_rate():
    bench = load_bench("content_ceiling")
    torch.manual_seed(0)
    for bits, frames in ((8, 1), (12, 1), (16, 2)):
        bottleneck = bench.FSQBottleneck(384, 32, frames_per_code=frames, shipped_shape=True, bits=bits)
        x = torch.randn(2, 7, 384)
        assert bottleneck(x).shape == (2, 7, 32)  # back to every 25 Hz frame, odd lengths too
        levels = bottleneck.levels(x[0])
        assert levels.shape == (-(-7 // frames), bits // 2)
        assert int(levels.min()) >= 0 and int(levels.max()) <= 3


def test_table_of_what_follows_each_code():
    bench = load_bench("code_entropy")
    radix = torch.tensor([64, 16, 4, 1])
    every_code_held = [((torch.full((40,), c) // radix[:, None]) % 4).T for c in range(256)]
    noise = sequences(64, 40, torch.Generator().manual_seed(2), predictable=False)
    # Each code followed by itself on train: a held code costs its first frame, then little
    # (the smoothing's 64 pseudo-counts against 39 real ones keep it above 1 bit).
    assert bench.bigram_bits(every_code_held, every_code_held[:32], LEVELS) < 2
    assert bench.bigram_bits(every_code_held, noise, LEVELS) > 8  # held on train, noise on dev: worse than 8
    assert 7.5 < bench.bigram_bits(noise[:48], noise[48:], LEVELS) < 9
