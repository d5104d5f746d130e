import torch

from claricodec.quantizer import FSQPolicy


def test_argmax_is_the_documented_rounding_rule():
    q = FSQPolicy((4, 4, 4, 4))
    z = torch.tensor([-1.99, -1.0, -0.5, -1e-6, 0.0, 0.99, 1.0, 1.99]).view(1, 1, -1).repeat(1, 4, 1)
    k = q.argmax(z)[0, 0].tolist()
    assert k == [0, 1, 1, 1, 2, 2, 3, 3]  # boundaries round up
    # The policy's most likely level is the same as the rounding (away from boundaries).
    z = torch.empty(1, 4, 500).uniform_(-1.99, 1.99)
    assert torch.equal(q.logits(z).argmax(-1), q.argmax(z))


def test_index_packing_first_dimension_most_significant():
    q = FSQPolicy((4, 4, 4, 4))
    k = torch.tensor([[[3], [0], [1], [2]]])
    assert q.to_index(k).item() == 3 * 64 + 0 * 16 + 1 * 4 + 2
    every = torch.arange(256).view(1, -1)
    assert torch.equal(q.to_index(q.from_index(every)), every)


def test_scaled_levels_span_minus_one_to_one():
    q = FSQPolicy((4, 4, 4, 4))
    k = torch.arange(4).view(1, 1, 4).repeat(1, 4, 1)
    assert torch.allclose(q.scaled(k)[0, 0], torch.tensor([-1, -1 / 3, 1 / 3, 1]))


def test_temperature_controls_how_often_samples_leave_the_argmax():
    torch.manual_seed(0)
    z = torch.empty(1, 4, 4000).uniform_(-1.9, 1.9)
    shares = []
    for t in (0.01, 0.1, 1.0):
        q = FSQPolicy((4, 4, 4, 4), temperature=t)
        k, logp = q.sample(z, torch.Generator().manual_seed(1))
        shares.append((k != q.argmax(z)).any(1).float().mean().item())
        assert torch.allclose(logp, q.log_prob(z, k))
        assert (logp <= 0).all()
    assert shares[0] < shares[1] < shares[2]
    assert shares[2] > 0.5 and shares[0] < 0.1


def test_straight_through_passes_gradient():
    q = FSQPolicy((4, 4, 4, 4))
    h = torch.randn(2, 4, 10, requires_grad=True)
    value, _ = q.quantize_ste(q.bound(h))
    value.sum().backward()
    assert h.grad.abs().sum() > 0
