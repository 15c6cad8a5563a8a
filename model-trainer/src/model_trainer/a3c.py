"""A3C with an LSTM core: N worker processes share one model and one Adam optimiser.

Each worker steps its own ``VecTradingEnv`` (several environments at once), rolls out
``n_steps`` with its local copy, computes n-step bootstrapped returns, and applies the
gradient of policy loss − entropy bonus + value loss (clipped) to the shared parameters
lock-free (Hogwild, as in the A3C paper). Seeds are derived from the job seed and the worker
rank; with one worker a run is bit-for-bit reproducible.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as tmp
from torch import Tensor, nn

from model_trainer.config import A3CParams
from model_trainer.env import Market, RewardConfig, VecTradingEnv


class ActorCritic(nn.Module):
    """obs → tanh encoder → LSTM (``hidden_layers`` × ``hidden_size``) → policy and value heads."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int = 64, hidden_layers: int = 1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.hidden_layers = hidden_layers
        self.encoder = nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.Tanh())
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=hidden_layers)
        self.policy = nn.Linear(hidden_size, n_actions)
        self.value = nn.Linear(hidden_size, 1)
        # Small initial policy weights: start close to uniform, as entropy-regularised AC likes.
        nn.init.normal_(self.policy.weight, std=0.01)
        nn.init.zeros_(self.policy.bias)

    def logits(self, obs: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.encoder(obs).unsqueeze(0)
        out, (h2, c2) = self.lstm(x, (h, c))
        core = out[0]
        return self.policy(core), self.value(core), h2, c2

    def forward(self, obs: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        logits, value, h2, c2 = self.logits(obs, h, c)
        return torch.softmax(logits, dim=-1), value, h2, c2

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        shape = (self.hidden_layers, batch, self.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)


def _shared(t: Tensor) -> Tensor:
    t.share_memory_()  # type: ignore[no-untyped-call]
    return t


class SharedAdam:
    """Adam whose moments and step count live in shared memory, updating shared parameters."""

    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.params = list(params)
        self.lr = lr
        self.betas = betas
        self.eps = 1e-8
        self.exp_avg = [_shared(torch.zeros_like(p)) for p in self.params]
        self.exp_avg_sq = [_shared(torch.zeros_like(p)) for p in self.params]
        self.steps = _shared(torch.zeros(1))

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor | None]) -> None:
        self.steps += 1
        t = float(self.steps.item())
        b1, b2 = self.betas
        bias1, bias2 = 1 - b1**t, 1 - b2**t
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            if g is None:
                continue
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v / bias2).sqrt_().add_(self.eps), value=-self.lr / bias1)


@dataclass(frozen=True)
class EnvSpec:
    """What a worker needs to build its environments (picklable)."""

    market: Market
    ranges: list[tuple[int, int]]
    window: int
    actions: list[float]
    initial_cash: int
    rebalance_band: float
    risk_penalty: float

    def make(self, n_envs: int, episode_length: int, seed: int) -> VecTradingEnv:
        return VecTradingEnv(
            self.market,
            window=self.window,
            actions=self.actions,
            reward=RewardConfig(risk_penalty=self.risk_penalty),
            initial_cash=self.initial_cash,
            rebalance_band=self.rebalance_band,
            ranges=self.ranges,
            n_envs=n_envs,
            episode_length=episode_length,
            seed=seed,
        )


@dataclass
class UpdateStats:
    """A worker's report after a batch of updates."""

    rank: int
    steps: int
    episodes: int
    reward: float
    policy_loss: float
    value_loss: float
    entropy: float


def worker_loop(
    rank: int,
    shared: ActorCritic,
    optimiser: SharedAdam,
    spec: EnvSpec,
    params: A3CParams,
    seed: int,
    counter: Any,
    reports: Any,
    stop: Any,
    report_every: int = 10,
) -> None:
    """One A3C worker: roll out, compute n-step returns, push clipped gradients, repeat."""
    torch.set_num_threads(1)
    worker_seed = seed * 1000 + rank
    torch.manual_seed(worker_seed)
    env = spec.make(params.envs_per_worker, params.episode_length, worker_seed)
    local = ActorCritic(env.obs_dim, len(spec.actions), params.hidden_size, params.hidden_layers)
    obs = torch.from_numpy(env.reset())
    h, c = local.initial_state(env.n)
    acc = {"reward": 0.0, "policy": 0.0, "value": 0.0, "entropy": 0.0, "n": 0, "steps": 0, "episodes": 0}
    batch_steps = params.n_steps * env.n
    while not stop.is_set():
        with counter.get_lock():
            if counter.value >= params.total_steps:
                break
            counter.value += batch_steps
        local.load_state_dict(shared.state_dict())
        h, c = h.detach(), c.detach()
        log_probs, values, entropies, rewards, masks = [], [], [], [], []
        episodes_before = env.episodes
        for _ in range(params.n_steps):
            logits, value, h, c = local.logits(obs, h, c)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()  # type: ignore[no-untyped-call]
            next_obs, reward, done, _ = env.step(action.numpy())
            log_probs.append(dist.log_prob(action))  # type: ignore[no-untyped-call]
            entropies.append(dist.entropy())  # type: ignore[no-untyped-call]
            values.append(value.squeeze(1))
            rewards.append(torch.from_numpy(reward))
            mask = torch.from_numpy((~done).astype(np.float32))
            masks.append(mask)
            # a finished episode's memory must not leak into the next one
            h = h * mask.view(1, -1, 1)
            c = c * mask.view(1, -1, 1)
            obs = torch.from_numpy(next_obs)
        with torch.no_grad():
            _, bootstrap, _, _ = local.logits(obs, h, c)
        ret = bootstrap.squeeze(1)
        returns = []
        for r, m in zip(reversed(rewards), reversed(masks), strict=True):
            ret = r + params.gamma * ret * m
            returns.append(ret)
        returns.reverse()
        value_t = torch.stack(values)
        advantage = torch.stack(returns) - value_t
        policy_loss = -(torch.stack(log_probs) * advantage.detach()).mean()
        value_loss = 0.5 * advantage.pow(2).mean()
        entropy = torch.stack(entropies).mean()
        loss = policy_loss + params.value_coef * value_loss - params.entropy * entropy
        local.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(local.parameters(), params.max_grad_norm)
        optimiser.step([p.grad for p in local.parameters()])

        acc["reward"] += torch.stack(rewards).mean().item()
        acc["policy"] += policy_loss.item()
        acc["value"] += value_loss.item()
        acc["entropy"] += entropy.item()
        acc["n"] += 1
        acc["steps"] += batch_steps
        acc["episodes"] += env.episodes - episodes_before
        if acc["n"] >= report_every:
            _flush(rank, acc, reports)
    if acc["n"]:
        _flush(rank, acc, reports)


def _flush(rank: int, acc: dict[str, Any], reports: Any) -> None:
    n = acc["n"]
    reports.put(
        UpdateStats(
            rank,
            acc["steps"],
            acc["episodes"],
            acc["reward"] / n,
            acc["policy"] / n,
            acc["value"] / n,
            acc["entropy"] / n,
        )
    )
    for key in acc:
        acc[key] = 0 if key in ("n", "steps", "episodes") else 0.0


@dataclass
class TrainResult:
    state_dict: dict[str, Tensor]
    best_val_sharpe: float | None
    steps: int
    episodes: int
    seconds: float
    curves: list[dict[str, float]] = field(default_factory=list)


ProgressCallback = Callable[[dict[str, float]], None]
Validator = Callable[[ActorCritic], float]


def train_a3c(
    spec: EnvSpec,
    params: A3CParams,
    seed: int,
    *,
    validate: Validator | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Run ``params.workers`` processes until ``params.total_steps`` env steps; keep the
    parameters with the best validation Sharpe (checked every ``eval_every_steps``)."""
    torch.manual_seed(seed)
    ctx = tmp.get_context(params.start_method)
    obs_dim = spec.window * spec.market.window_features.shape[1] + spec.market.static.shape[1] + 1
    shared = ActorCritic(obs_dim, len(spec.actions), params.hidden_size, params.hidden_layers)
    shared.share_memory()
    optimiser = SharedAdam(shared.parameters(), params.lr)
    counter = ctx.Value("q", 0)
    reports = ctx.Queue()
    stop = ctx.Event()
    workers = [
        ctx.Process(  # type: ignore[attr-defined]
            target=worker_loop,
            args=(rank, shared, optimiser, spec, params, seed, counter, reports, stop),
            daemon=True,
        )
        for rank in range(params.workers)
    ]
    started = time.perf_counter()
    for w in workers:
        w.start()
    steps = episodes = 0
    next_eval = params.eval_every_steps
    best: tuple[float, dict[str, Tensor]] | None = None
    curves: list[dict[str, float]] = []

    def evaluate() -> None:
        nonlocal best
        if validate is None:
            return
        snapshot = {k: v.clone() for k, v in shared.state_dict().items()}
        probe = ActorCritic(obs_dim, len(spec.actions), params.hidden_size, params.hidden_layers)
        probe.load_state_dict(snapshot)
        sharpe = validate(probe)
        point = {"steps": float(steps), "val_sharpe": sharpe, "elapsed": time.perf_counter() - started}
        curves.append(point)
        if on_progress:
            on_progress({**point, "episodes": float(episodes), "kind": 1.0})
        if best is None or sharpe > best[0]:
            best = (sharpe, snapshot)

    try:
        while any(w.is_alive() for w in workers) or not reports.empty():
            if should_stop():
                stop.set()
            try:
                stats: UpdateStats = reports.get(timeout=0.2)
            except queue.Empty:
                continue
            steps += stats.steps
            episodes += stats.episodes
            point = {
                "steps": float(steps),
                "episodes": float(episodes),
                "reward": stats.reward,
                "policy_loss": stats.policy_loss,
                "value_loss": stats.value_loss,
                "entropy": stats.entropy,
                "elapsed": time.perf_counter() - started,
            }
            curves.append(point)
            if on_progress:
                on_progress({**point, "kind": 0.0})
            if steps >= next_eval and not stop.is_set():
                next_eval += params.eval_every_steps
                evaluate()
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    failed = [w.exitcode for w in workers if w.exitcode not in (0, None)]
    if failed and not should_stop():
        raise RuntimeError(f"A3C worker(s) exited with {failed}")
    if not should_stop():
        evaluate()
    seconds = time.perf_counter() - started
    final = best[1] if best is not None else {k: v.clone() for k, v in shared.state_dict().items()}
    return TrainResult(final, best[0] if best else None, steps, episodes, seconds, curves)
