"""Stage 2: GRPO on the encoder alone, rewarded by an ASR's error rate (DESIGN.md section 5).

The quantiser is the policy: per frame and dimension a categorical over the FSQ levels
(logits -distance^2 / the temperature frozen at the end of stage 1). For each utterance a
group of G code sequences is sampled, decoded by the frozen decoder, transcribed, and
rewarded with 1 - CER (or WER), clipped to [0, 1]; or, with reward "loglik", scored by the
ASR's teacher-forced mean log-probability of the reference tokens, a dense reward that
moves with every sampled frame where an error rate moves by whole words; or, with "states",
by how close Whisper's encoder states of the decoded audio are to the original's (the
encode-time search's default judge, search.states_similarity: no transcript). Advantages are
the rewards normalised within the group. With "states-local" each frame has its own reward:
the states' cosine averaged over the second around it, normalised within the group frame by
frame, so a draw is credited where it sounded closer, not only as a whole (the search per
segment found its gain there). Loss per utterance:

    PPO-clipped policy gradient (per frame, GRPO style)
  + kl_weight  * exact KL(policy || stage-1 policy), per dimension, mean over frames
  + mel_weight * multi-scale mel L1 of the deterministic (argmax) path

Decoder and quantiser levels never change, so new files decode with the shipped decoder
and the model id stays. With --control the advantages are zeroed (same steps, same other
losses): the control run that shows a gain is the reward's, not more training.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..codec import Codec
from .data import DEFAULT_CACHE, check_front_cache, utterance_pcm
from .losses import MultiScaleMelLoss
from .stage1 import Corpus


@dataclass
class Stage2Config:
    steps: int = 1500
    group_size: int = 8
    utterances_per_step: int = 2  # gradient accumulation: one scalar reward per clip is noisy
    lr: float = 1e-5
    clip_eps: float = 0.2
    kl_weight: float = 0.05
    mel_weight: float = 1.0
    reward: str = "cer"  # "cer" (smoother than "wer"), "loglik", "states" or "states-local" (module docstring)
    heat: float = 1.0  # the draws' temperature as a multiple of the policy's (the search per segment uses 4)
    max_seconds: float = 6.0
    eval_every: int = 50
    eval_count: int = 48  # fixed train subset for the argmax-path check
    divergence: float = 0.15  # stop when its error rate is this much (relative) above the best, twice
    control: bool = False
    seed: int = 0


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards [G] (or [G, T]: per frame) normalised within the group (frame by frame);
    all-equal rewards carry no signal (zeros)."""
    std = rewards.std(0)
    usable = torch.isfinite(std) & (std >= 1e-6)
    return torch.where(usable, (rewards - rewards.mean(0)) / std.clamp(min=1e-6), torch.zeros_like(rewards))


LOCAL_FRAMES = 25  # the states-local reward's neighbourhood: a second of 25 Hz frames


def local_rewards(cosines: torch.Tensor, frames: int) -> torch.Tensor:
    """[G, 50 Hz frames] cosines -> [G, frames] rewards: each 25 Hz frame's mean cosine over
    the LOCAL_FRAMES around it."""
    pooled = cosines[:, :2 * frames].reshape(len(cosines), -1, 2).mean(-1)
    pooled = torch.nn.functional.pad(pooled, (0, frames - pooled.shape[1]), mode="replicate")
    kernel = torch.ones(1, 1, LOCAL_FRAMES) / LOCAL_FRAMES
    padded = torch.nn.functional.pad(pooled[:, None], (LOCAL_FRAMES // 2, LOCAL_FRAMES // 2), mode="replicate")
    return torch.nn.functional.conv1d(padded, kernel)[:, 0]


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Exact KL(p || q) of categoricals over the last axis."""
    logp, logq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                clip_eps: float) -> torch.Tensor:
    """PPO-clipped surrogate per frame, averaged over frames and the group."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -surrogate.mean()


class Stage2Trainer:
    def __init__(self, codec: Codec, cfg: Stage2Config, train_dir: Path, run_dir: Path,
                 asr, reward_options, log=print):
        from ..textnorm import count_errors
        self.count_errors = count_errors
        self.codec, self.cfg, self.run_dir, self.log = codec, cfg, run_dir, log
        self.asr, self.reward_options = asr, reward_options
        self.device = codec.device
        self.reference = copy.deepcopy(codec.encoder).eval().requires_grad_(False)
        codec.decoder.eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(codec.encoder.parameters(), cfg.lr, weight_decay=0.0)
        self.mel_loss = MultiScaleMelLoss().to(self.device)
        # A Whisper-front encoder reads the cached states (front.npy), which equal what
        # encoding computes. Run on the bare utterance, Whisper's states differ (no analysis
        # window around it): until session 21 the policy trained on states whose codes were
        # encoding's on only a third of the frames.
        self.reads_features = getattr(codec.encoder, "reads_features", False)
        if self.reads_features:
            if not (Path(train_dir) / "front.npy").is_file():
                raise FileNotFoundError(f"{train_dir} has no front.npy: run `claricodec train prepare-front`")
            check_front_cache(Path(train_dir), codec.config.front_window)
        self.corpus = Corpus(train_dir, "front.npy" if self.reads_features else "teacher.npy")
        limit = int(cfg.max_seconds * 16000)
        self.pool = [i for i, u in enumerate(self.corpus.index) if u["length"] <= limit]
        self.rng = random.Random(cfg.seed)
        self.eval_ids = random.Random(12345).sample(self.pool, min(cfg.eval_count, len(self.pool)))
        self.step, self.wall = 0, 0.0
        self.best_error, self.best_state, self.strikes = math.inf, None, 0
        self.asr_references: dict[int, str] = {}
        run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def draw_temperature(self) -> torch.Tensor:
        """Hotter draws move more codes, so a group's rewards spread more (session 23: the
        search's winners were the draws that moved more). The ratio and the policy gradient
        use the same hotter distribution; the KL term stays at the policy's temperature."""
        return self.codec.quantizer.temperature * self.cfg.heat

    # --- references and rewards ---------------------------------------------------------

    def _audio(self, i: int) -> np.ndarray:
        return utterance_pcm(self.corpus.audio, self.corpus.index[i])

    def _latent(self, encoder, i: int) -> torch.Tensor:
        """The encoder's unbounded latent [1, D, T] of utterance i, as encoding computes it."""
        if self.reads_features:
            features = torch.from_numpy(self.corpus.teacher_frames(i).T.copy())[None]
            return encoder.from_features(features.to(self.device))
        return encoder(torch.from_numpy(self._audio(i))[None].to(self.device))

    def reference_text(self, i: int) -> str:
        """The transcript, or the ASR's transcript of the original where there is none."""
        text = self.corpus.index[i].get("text")
        if text:
            return text
        if i not in self.asr_references:
            self.asr_references[i] = self.asr.texts([self._audio(i)], self.reward_options)[0]
        return self.asr_references[i]

    @property
    def metric(self) -> str:
        """The error rate that rewards (cer, wer) or, for loglik, checks the argmax path."""
        return "wer" if self.cfg.reward == "wer" else "cer"

    def error_rate(self, reference: str, hypothesis: str) -> float:
        errors = self.count_errors(reference, hypothesis)
        rate = getattr(errors, self.metric)
        return 1.0 if rate is None else min(1.0, rate)

    # --- one utterance ---------------------------------------------------------------------

    def utterance_loss(self, i: int) -> tuple[torch.Tensor, dict]:
        cfg, q = self.cfg, self.codec.quantizer
        audio = torch.from_numpy(self._audio(i))[None].to(self.device)
        z = q.bound(self._latent(self.codec.encoder, i))  # [1, D, T]
        with torch.no_grad():
            z_ref = q.bound(self._latent(self.reference, i))
            zg = z.detach().expand(cfg.group_size, -1, -1)
            k, old_logp = q.sample(zg, temperature=self.draw_temperature)  # [G, D, T] levels, [G, T] per frame
            decoded = self.codec.decoder(q.scaled(k)).cpu().numpy()
        reference = self.reference_text(i)
        if cfg.reward == "loglik":
            rewards = torch.tensor(self.asr.reference_logprob(
                list(decoded), [reference] * cfg.group_size, self.reward_options))
        elif cfg.reward == "states":
            from ..search import states_similarity
            rewards = torch.tensor(states_similarity(self._audio(i), decoded), dtype=torch.float32)
        elif cfg.reward == "states-local":
            from ..search import states_similarity_frames
            cosines = torch.tensor(states_similarity_frames(self._audio(i), decoded), dtype=torch.float32)
            rewards = local_rewards(cosines, k.shape[-1])  # [G, T]
        else:
            hyps = self.asr.texts(list(decoded), self.reward_options)
            rewards = torch.tensor([1.0 - self.error_rate(reference, h) for h in hyps])
        advantages = torch.zeros_like(rewards) if cfg.control else group_advantages(rewards)

        logp = q.log_prob(z.expand(cfg.group_size, -1, -1), k, self.draw_temperature)
        pg = policy_loss(logp, old_logp, advantages.to(self.device), cfg.clip_eps)
        kl = categorical_kl(q.logits(z), q.logits(z_ref)).sum(1).mean()
        codes, _ = q.quantize_ste(z)
        mel = self.mel_loss(self.codec.decoder(codes), audio)
        loss = pg + cfg.kl_weight * kl + cfg.mel_weight * mel
        dist = q.distribution(z.detach())
        stats = {"reward": rewards.mean().item(), "reward_std": rewards.std(0).mean().item(),
                 "kl": kl.item(), "mel": mel.item(), "pg": pg.item(),
                 "entropy": dist.entropy().sum(1).mean().item(),
                 "sample_share": (k != q.argmax(zg)).any(1).float().mean().item()}
        return loss, stats

    # --- evaluation on the deterministic path ----------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean error rate of the argmax path over the fixed train subset, each clip's clipped
        to 1 as the reward's is. A corpus rate let a clip the ASR hears several times over
        count several times: with the stage-1 encoder one such clip made a third of the 48
        clips' character errors (corpus CER 0.353, 0.239 without it; mean per clip 0.262)."""
        q, clips, refs = self.codec.quantizer, [], []
        for i in self.eval_ids:
            k = q.argmax(q.bound(self._latent(self.codec.encoder, i)))
            clips.append(self.codec.decoder(q.scaled(k))[0].cpu().numpy())
            refs.append(self.reference_text(i))
        hyps = self.asr.texts(clips, self.reward_options)
        return float(np.mean([self.error_rate(r, h) for r, h in zip(refs, hyps)]))

    # --- state ------------------------------------------------------------------------------

    def save(self) -> None:
        state = {"encoder": self.codec.encoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "wall": self.wall, "best_error": self.best_error,
                 "best_state": self.best_state, "strikes": self.strikes,
                 "rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(),
                 "asr_references": self.asr_references, "config": asdict(self.cfg),
                 "check": "mean-per-clip"}
        torch.save(state, self.run_dir / "state.pt.tmp")
        (self.run_dir / "state.pt.tmp").replace(self.run_dir / "state.pt")

    def resume(self) -> bool:
        path = self.run_dir / "state.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.codec.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.wall, self.best_error = state["step"], state["wall"], state["best_error"]
        self.best_state, self.strikes = state["best_state"], state["strikes"]
        self.rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device
        self.asr_references = state["asr_references"]
        if state.get("check") != "mean-per-clip" and self.best_state is not None:
            # Saved before session 24, its best was a corpus error rate: measure it again.
            current = copy.deepcopy(self.codec.encoder.state_dict())
            self.codec.encoder.load_state_dict(self.best_state)
            self.best_error = self.evaluate()
            self.codec.encoder.load_state_dict(current)
        return True

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "train.log", "a") as f:
            f.write(json.dumps(record) + "\n")

    # --- loop -------------------------------------------------------------------------------

    def run(self, until: int | None = None, progress=None) -> None:
        cfg = self.cfg
        until = min(until or cfg.steps, cfg.steps)
        if self.best_state is None:
            self.best_error = self.evaluate()
            self.best_state = copy.deepcopy(self.codec.encoder.state_dict())
            self._log({"step": self.step, "eval_error": self.best_error})
        while self.step < until:
            t0 = time.time()
            self.optimizer.zero_grad()
            totals: dict[str, float] = {}
            for _ in range(cfg.utterances_per_step):
                loss, stats = self.utterance_loss(self.rng.choice(self.pool))
                (loss / cfg.utterances_per_step).backward()
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value / cfg.utterances_per_step
            torch.nn.utils.clip_grad_norm_(self.codec.encoder.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            self.wall += time.time() - t0
            self._log({"step": self.step, "wall": round(self.wall)} | {k: round(v, 4) for k, v in totals.items()})
            if progress:
                progress(self.step, totals)
            if self.step % cfg.eval_every == 0:
                error = self.evaluate()
                self._log({"step": self.step, "eval_error": error})
                self.log(f"step {self.step}: train-subset {self.metric.upper()} per clip {error:.4f} "
                         f"(best {self.best_error:.4f})")
                if error < self.best_error:
                    self.best_error, self.strikes = error, 0
                    self.best_state = copy.deepcopy(self.codec.encoder.state_dict())
                elif error > self.best_error * (1 + cfg.divergence):
                    self.strikes += 1
                    if self.strikes >= 2:
                        self.log("diverging: stopped; the best encoder so far is kept")
                        self.save()
                        break
                self.save()
        self.save()

    def best_codec(self) -> Codec:
        self.codec.encoder.load_state_dict(self.best_state)
        return self.codec


def default_run_dir(control: bool = False) -> Path:
    return DEFAULT_CACHE / "runs" / ("stage2-control" if control else "stage2")

