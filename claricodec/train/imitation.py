"""Stage 2 by expert iteration: teach the encoder the codes an encode-time search chose.

`claricodec encode --search N` (search.py) tries the argmax codes and N - 1 draws from the
quantiser policy per 10 s window and keeps the one Whisper transcribes closest to the
original. That is a policy-improvement step paid for at encode time; expert iteration
distils it into the encoder, so the plain (argmax) encoder produces such codes by itself:

  1. search-encode train audio (`claricodec encode --search 8 AUDIO CODES`);
  2. `collect`: for every window, recompute the search's candidates (they depend only on
     the stage-1 encoder, the window and a seed), find which one the file holds, and pair
     it with a control target: where the search kept the argmax the control does too,
     elsewhere it takes a seeded random draw from the same candidates. The control thus
     moves the same windows away from the argmax by the same kind of draw; only the
     ASR's choice is missing, so a gain over the control run is the reward's;
  3. `ImitationTrainer`: encoder only, loss per valid frame

        cross-entropy of the policy toward the target levels
      + kl_weight  * exact KL(policy || stage-1 policy)
      + mel_weight * multi-scale mel L1 of the argmax path through the frozen decoder.

Decoder and quantiser never change, so the model id and old files are unaffected.

A target set is a directory: audio.npy (float32, the utterances exactly as the search read them),
windows.json (one record per window), levels.npz (expert, control and stage-1 argmax
levels, [windows, D, WINDOW] uint8) and meta.json.
"""
from __future__ import annotations

import copy
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..codec import CONTEXT, WINDOW, Codec, WindowedEncoder
from .losses import MultiScaleMelLoss
from .stage2 import categorical_kl

TARGETS = ("expert", "control")


class TargetError(ValueError):
    """Codes that cannot be paired with their audio and candidates. One line."""


def window_span(k: int, frames: int, hop: int) -> tuple[int, int]:
    """Samples [start, end) of an utterance that window k's valid frames and its context
    cover; outside the utterance they are zeros."""
    return (k * WINDOW - CONTEXT) * hop, (k * WINDOW + frames + CONTEXT) * hop


def crop(signal: np.ndarray, start: int, end: int) -> np.ndarray:
    out = np.zeros(end - start, np.float32)
    lo, hi = max(start, 0), min(end, len(signal))
    if hi > lo:
        out[lo - start:hi - start] = signal[lo:hi]
    return out


# --- step 2: targets ---------------------------------------------------------------------


def read_codes(path: Path) -> np.ndarray:
    from .. import bitstream
    try:
        stream = bitstream.read_stream(Path(path).read_bytes())
    except bitstream.FormatError as err:
        raise TargetError(f"{path}: {err}") from None
    return np.asarray(stream.indices, dtype=np.int64)


def collect(codec: Codec, pairs: Iterable[tuple[Path, Path]], out: Path, candidates: int = 8,
            search_seed: int = 0, control_seed: int = 1,
            progress: Callable[[], None] | None = None) -> dict:
    """Pairs of (audio file, its searched .cc file) -> a target set in `out`."""
    from ..audio import AudioError
    from ..search import ASRSearch
    from ..stream_io import open_audio, resampled_blocks

    q, hop = codec.quantizer, codec.mode.hop
    search = ASRSearch(codec, asr=None, candidates=candidates, seed=search_seed)
    rng = random.Random(control_seed)
    signals, records, levels = [], [], {"expert": [], "control": [], "argmax": []}
    offset, moved = 0, 0
    for audio_path, code_path in pairs:
        try:
            blocks = list(resampled_blocks(open_audio(str(audio_path)), codec.mode.sample_rate))
        except AudioError as err:
            raise TargetError(f"{audio_path}: {err}") from None
        signal = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        codes = read_codes(code_path)
        if len(codes) != codec.num_frames(len(signal)):
            raise TargetError(f"{code_path}: {len(codes)} frames, but {audio_path} makes "
                              f"{codec.num_frames(len(signal))}")
        windows = []

        def record(window_audio, number, valid_samples, span):
            windows.append((number, -(-valid_samples // hop),
                            search.candidate_levels(window_audio, number, span)))
            return np.zeros(WINDOW, np.int64)

        encoder = WindowedEncoder(codec, choose=record)
        encoder.push(signal)
        encoder.finish()
        for number, frames, cands in windows:
            held = q.from_index(torch.from_numpy(codes[number * WINDOW:number * WINDOW + frames])[None])[0]
            match = [c for c in range(len(cands)) if torch.equal(cands[c][:, :frames], held)]
            if not match:
                raise TargetError(f"{code_path}: window {number} is none of the {candidates} candidates "
                                  f"(searched with other weights, another --search N or seed, or, for a file over 10 s, "
                                  f"without encode --fixed-windows?)")
            expert = match[0]
            control = 0 if expert == 0 else rng.randrange(1, len(cands))
            moved += expert > 0
            records.append({"file": str(code_path), "offset": offset, "length": len(signal),
                            "window": number, "frames": frames, "expert": expert, "control": control})
            for name, c in (("expert", expert), ("control", control), ("argmax", 0)):
                levels[name].append(cands[c].numpy().astype(np.uint8))
        signals.append(signal.astype(np.float32))  # exact: int16 would flip codes near a boundary
        offset += len(signal)
        if progress:
            progress()
    if not records:
        raise TargetError("no searched files to collect")
    out = Path(out)
    if out.exists() and not (out / "meta.json").exists():
        raise TargetError(f"{out} exists and is not a target set; choose another --out")
    # Written beside, then swapped in: an interrupted run never leaves a half-written set.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.save(partial / "audio.npy", np.concatenate(signals))
    np.savez_compressed(partial / "levels.npz", **{k: np.stack(v) for k, v in levels.items()})
    (partial / "windows.json").write_text(json.dumps(records))
    meta = {"files": len(signals), "windows": len(records), "moved_windows": moved,
            "candidates": candidates, "search_seed": search_seed, "control_seed": control_seed}
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return meta


def searched_pairs(audio_dir: Path, code_dir: Path) -> list[tuple[Path, Path]]:
    """(audio, .cc) pairs: every .cc under code_dir with the audio file of the same relative
    path and stem under audio_dir (the layout `encode DIR DIR` writes)."""
    from ..audio import AUDIO_SUFFIXES
    pairs = []
    for code in sorted(Path(code_dir).rglob("*.cc")):
        stem = code.relative_to(code_dir).with_suffix("")
        folder = Path(audio_dir) / stem.parent
        found = sorted(p for p in folder.iterdir() if p.stem == stem.name
                       and p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
        if not found:
            raise TargetError(f"{code}: no audio named {stem}.* under {audio_dir}")
        pairs.append((found[0], code))
    return pairs


class TargetSet:
    def __init__(self, directory: Path):
        directory = Path(directory)
        for name in ("audio.npy", "levels.npz", "windows.json", "meta.json"):
            if not (directory / name).exists():
                raise TargetError(f"{directory} is not a target set (no {name}); make one with "
                                  f"`claricodec train targets`")
        self.audio = np.load(directory / "audio.npy", mmap_mode="r")
        with np.load(directory / "levels.npz") as levels:
            self.levels = {k: torch.from_numpy(levels[k].astype(np.int64)) for k in (*TARGETS, "argmax")}
        self.windows = json.loads((directory / "windows.json").read_text())
        self.meta = json.loads((directory / "meta.json").read_text())

    def split(self, val_share: float, seed: int = 12345) -> tuple[list[int], list[int]]:
        """Window numbers for training and validation, split by file (no file in both)."""
        files = sorted({w["file"] for w in self.windows})
        random.Random(seed).shuffle(files)
        val_files = set(files[:round(len(files) * val_share)])
        train = [i for i, w in enumerate(self.windows) if w["file"] not in val_files]
        val = [i for i, w in enumerate(self.windows) if w["file"] in val_files]
        return train, val

    def batch(self, ids: list[int], hop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio [B, S] of the windows' valid frames plus context (zero-padded to the
        longest), and the valid-frame count of each."""
        crops = []
        for i in ids:
            w = self.windows[i]
            signal = self.audio[w["offset"]:w["offset"] + w["length"]]
            crops.append(crop(signal, *window_span(w["window"], w["frames"], hop)))
        longest = max(len(c) for c in crops)
        audio = np.stack([np.pad(c, (0, longest - len(c))) for c in crops])
        return torch.from_numpy(audio), torch.tensor([self.windows[i]["frames"] for i in ids])


# --- step 3: training --------------------------------------------------------------------


@dataclass
class ImitationConfig:
    target: str = "expert"  # or "control"
    steps: int = 600
    batch_windows: int = 16
    lr: float = 5e-5
    kl_weight: float = 0.05
    mel_weight: float = 1.0
    val_share: float = 0.1
    eval_every: int = 100
    seed: int = 0


def frame_mask(frames: torch.Tensor, length: int) -> torch.Tensor:
    return torch.arange(length)[None] < frames[:, None]  # [B, T]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def agreement(new: torch.Tensor, old: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per level (frame and dimension): of those where the target leaves the stage-1 argmax,
    the share the new argmax follows ("moved"); of those where it keeps it, the share the
    new argmax keeps too ("kept")."""
    mask = mask[:, None].expand_as(new)
    leave = (target != old) & mask
    keep = (target == old) & mask
    share = lambda hit, of: float((hit & of).sum() / of.sum().clamp(min=1))  # noqa: E731
    return {"moved": share(new == target, leave), "kept": share(new == old, keep),
            "changed": share(new != old, mask)}


class ImitationTrainer:
    def __init__(self, codec: Codec, cfg: ImitationConfig, targets: TargetSet, run_dir: Path, log=print):
        if cfg.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}")
        if getattr(codec.encoder, "reads_features", False):
            # Training crops each window to the encoder's reach (window_span), which leaves a
            # mel-front latent as it was; Whisper's states depend on the whole analysis window.
            raise TargetError("train imitate needs a mel-front encoder: a Whisper-front encoder's "
                              "states depend on the whole analysis window, which its crops lose "
                              "(use train stage2)")
        self.codec, self.cfg, self.targets, self.run_dir, self.log = codec, cfg, targets, run_dir, log
        self.device = codec.device
        self.reference = copy.deepcopy(codec.encoder).eval().requires_grad_(False)
        codec.decoder.eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(codec.encoder.parameters(), cfg.lr, weight_decay=0.0)
        self.mel_loss = MultiScaleMelLoss().to(self.device)
        self.train_ids, self.val_ids = targets.split(cfg.val_share)
        if not self.train_ids:
            raise TargetError("no windows left to train on after the validation split")
        self.rng = random.Random(cfg.seed)
        self.step, self.wall = 0, 0.0
        run_dir.mkdir(parents=True, exist_ok=True)

    def _latents(self, ids: list[int]):
        """The windows' bounded latents over their real frames, the real-frame mask, the
        audio those frames cover, and the encoder's input."""
        q, hop = self.codec.quantizer, self.codec.mode.hop
        audio, frames = self.targets.batch(ids, hop)
        audio = audio.to(self.device)
        longest = int(frames.max())
        mask = frame_mask(frames, longest).to(self.device)
        z = q.bound(self.codec.encoder(audio))[:, :, CONTEXT:CONTEXT + longest]
        centre = audio[:, CONTEXT * hop:(CONTEXT + longest) * hop]
        return z, mask, centre, audio

    def masked_mel(self, codes: torch.Tensor, centre: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mel L1 of the decoded valid frames. Past a window's end both signals are made exact
        zeros (else the loss would reward whatever decodes quietest from padding), and the
        mean is rescaled to the valid share."""
        samples = mask.repeat_interleave(self.codec.mode.hop, dim=1).to(centre.dtype)
        mel = self.mel_loss(self.codec.decoder(codes) * samples, centre * samples)
        return mel * samples.numel() / samples.sum().clamp(min=1)

    def batch_loss(self, ids: list[int]) -> tuple[torch.Tensor, dict]:
        cfg, q = self.cfg, self.codec.quantizer
        z, mask, centre, audio = self._latents(ids)
        with torch.no_grad():
            z_ref = q.bound(self.reference(audio))[:, :, CONTEXT:CONTEXT + z.shape[-1]]
        target = self.targets.levels[cfg.target][ids][:, :, :z.shape[-1]].to(self.device)
        logits = q.logits(z)
        logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(1)
        ce = -masked_mean(logp, mask)
        kl = masked_mean(categorical_kl(logits, q.logits(z_ref)).sum(1), mask)
        mel = self.masked_mel(q.quantize_ste(z)[0], centre, mask)
        loss = ce + cfg.kl_weight * kl + cfg.mel_weight * mel
        return loss, {"ce": ce.item(), "kl": kl.item(), "mel": mel.item()}

    @torch.no_grad()
    def evaluate(self, ids: list[int] | None = None, batch: int = 32) -> dict:
        """Agreement of the argmax path with both targets on the validation windows, and
        the mel loss there."""
        ids = self.val_ids if ids is None else ids
        q, totals, weight = self.codec.quantizer, {}, 0
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            z, mask, centre, _ = self._latents(chunk)
            new = q.argmax(z)
            old = self.targets.levels["argmax"][chunk][:, :, :z.shape[-1]].to(self.device)
            stats = {"mel": self.masked_mel(q.scaled(new), centre, mask).item()}
            for name in TARGETS:
                target = self.targets.levels[name][chunk][:, :, :z.shape[-1]].to(self.device)
                for key, value in agreement(new, old, target, mask).items():
                    stats[key if key == "changed" else f"{name}_{key}"] = value
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value * len(chunk)
            weight += len(chunk)
        return {k: round(v / max(weight, 1), 4) for k, v in totals.items()}

    def save(self) -> None:
        state = {"encoder": self.codec.encoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "wall": self.wall, "rng": self.rng.getstate(),
                 "config": asdict(self.cfg)}
        torch.save(state, self.run_dir / "state.pt.tmp")
        (self.run_dir / "state.pt.tmp").replace(self.run_dir / "state.pt")

    def resume(self) -> bool:
        path = self.run_dir / "state.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        settings = lambda config: {k: v for k, v in config.items() if k != "steps"}  # noqa: E731
        if settings(state["config"]) != settings(asdict(self.cfg)):  # --steps may grow
            raise TargetError(f"{self.run_dir} holds a run with other settings; use another --run-dir")
        self.codec.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.wall = state["step"], state["wall"]
        self.rng.setstate(state["rng"])
        return True

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "train.log", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, until: int | None = None, progress=None) -> None:
        cfg = self.cfg
        until = min(until or cfg.steps, cfg.steps)
        if self.step == 0 and self.val_ids:
            self._log({"step": 0, "val": self.evaluate()})
        while self.step < until:
            t0 = time.time()
            ids = self.rng.sample(self.train_ids, min(cfg.batch_windows, len(self.train_ids)))
            self.optimizer.zero_grad()
            loss, stats = self.batch_loss(ids)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.codec.encoder.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            self.wall += time.time() - t0
            self._log({"step": self.step, "wall": round(self.wall)} | {k: round(v, 4) for k, v in stats.items()})
            if progress:
                progress(self.step, stats)
            if self.step % cfg.eval_every == 0 or self.step == until:
                if self.val_ids:
                    val = self.evaluate()
                    self._log({"step": self.step, "val": val})
                    self.log(f"step {self.step}: validation {val}")
                self.save()
