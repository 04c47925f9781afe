"""Optimizer unit tests on small synthetic problems (Schaul, Antonoglou & Silver 2014, "Unit Tests
for Stochastic Optimization"): no dataset, seconds on a CPU, so they can gate every change to an
optimizer.

Each problem is a function of a 2-D parameter θ with a known minimum, a start, a step budget and a
stated criterion. Every optimizer in the registry (plugins included) runs on each with learning
rates on a log grid (as Schaul et al. tune each optimizer per problem); it passes when its best
learning rate meets the criterion. The trajectories at the best learning rate are drawn over the
problem's contours.

- ``quadratic``: an ill-conditioned, axis-aligned bowl ½(x² + κy²), κ = 100.
- ``valley``: the same bowl rotated by 45°: diagonal preconditioners (AdaGrad, RMSProp, Adam) lose
  the advantage the axis-aligned bowl gives them.
- ``rosenbrock``: (1 − x)² + 100(y − x²)², a curved, flat-bottomed valley (Rosenbrock 1960).
- ``saddle``: x² + y⁴/4 − y²/2, a saddle at 0 between minima at y = ±1, started a hair off it.
- ``cliff``: a bowl with a steep drop (a sigmoid wall of height 10, slope 50) between start and
  minimum: a huge gradient for a few steps, as at the cliffs of recurrent nets (Pascanu et al. 2013).
- ``noisy``: the bowl ½‖θ‖² with N(0, 1) noise added to every gradient (seeded): what matters is
  where the iterates settle, not the first descent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from harness.components import OPTIMIZERS
from harness.store.records import save_figure

LRS = [10 ** (k / 2) for k in range(-6, 2)]  # 1e-3 … 3.16, half a decade apart
Fn = Callable[[torch.Tensor], torch.Tensor]


def _quadratic(kappa: float, angle: float = 0.0) -> Fn:
    c, s = math.cos(angle), math.sin(angle)

    def f(t: torch.Tensor) -> torch.Tensor:
        u, v = c * t[0] + s * t[1], -s * t[0] + c * t[1]
        return 0.5 * (u**2 + kappa * v**2)

    return f


def _rosenbrock(t: torch.Tensor) -> torch.Tensor:
    return (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2


def _saddle(t: torch.Tensor) -> torch.Tensor:
    return t[0] ** 2 + t[1] ** 4 / 4 - t[1] ** 2 / 2


def _cliff(t: torch.Tensor) -> torch.Tensor:
    bowl = 0.5 * ((t[0] - 4) ** 2 + 10 * t[1] ** 2)  # anisotropic: no single step of any lr lands on the minimum
    return bowl + 10 * torch.sigmoid(-50 * (t[0] - 2))  # the wall: 10 higher for x < 2, gone past it


@dataclass(frozen=True)
class Problem:
    name: str
    f: Fn
    start: tuple[float, float]
    f_min: float
    steps: int
    tolerance: float  # pass: f − f_min below this (for noisy: the mean over the last tenth of the steps)
    noise: float = 0.0  # std of Gaussian noise added to each gradient coordinate
    box: tuple[float, float, float, float] = (-2, 2, -2, 2)  # contour plot extent

    @property
    def criterion(self) -> str:
        where = "mean of the last 10% of steps" if self.noise else "at the end"
        return f"f − f* < {self.tolerance:g} ({where}) within {self.steps} steps"


PROBLEMS = {p.name: p for p in [
    # starts off the diagonal: from (1, 1) a sign-like first step of lr 1 lands on the minimum, and in
    # the rotated valley (1, 1) lies on the valley floor
    Problem("quadratic", _quadratic(100.0), (1.0, 0.7), 0.0, 300, 1e-4, box=(-1.5, 1.5, -1.5, 1.5)),
    Problem("valley", _quadratic(100.0, math.pi / 4), (1.0, 0.7), 0.0, 300, 1e-4, box=(-1.5, 1.5, -1.5, 1.5)),
    Problem("rosenbrock", _rosenbrock, (-1.5, 2.0), 0.0, 1000, 1e-3, box=(-2, 2, -1, 3)),
    Problem("saddle", _saddle, (1.0, 1e-3), -0.25, 300, 1e-3, box=(-1.5, 1.5, -1.5, 1.5)),
    Problem("cliff", _cliff, (0.0, 1.0), 0.0, 300, 1e-3, box=(-1, 6, -2, 2)),
    Problem("noisy", _quadratic(1.0), (2.0, 2.0), 0.0, 500, 0.05, noise=1.0, box=(-2.5, 2.5, -2.5, 2.5)),
]}


@dataclass
class Outcome:
    optimizer: str
    problem: str
    passed: bool
    lr: float  # the best learning rate of the grid
    gap: float  # f − f* by the criterion's measure, at that learning rate (inf when it blew up)
    steps_to_pass: int | None  # first step at which f − f* fell below the tolerance (deterministic problems)
    path: list[tuple[float, float]]


def run_one(optimizer: str, problem: Problem, lr: float, seed: int = 0) -> tuple[float, int | None, list]:
    """(gap, first step below tolerance, trajectory) of one optimizer at one learning rate."""
    caps = OPTIMIZERS.get(optimizer).caps
    # an optimizer of matrices (Muon, whose own rule gives it hidden matrices only) gets θ as a 1x2 matrix:
    # orthogonalizing a rank-1 update normalizes it, so Muon runs as normalized steepest descent with momentum
    start = torch.tensor([problem.start] if caps.rules else problem.start, dtype=torch.float64)
    param = start.requires_grad_(True)
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": optimizer, "lr": lr}, "optimizer"), [param])
    noise = torch.Generator().manual_seed(seed)
    path, gaps, first = [tuple(problem.start)], [], None

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = problem.f(param.view(2))
        loss.backward()
        if problem.noise:
            param.grad.add_(torch.randn(2, generator=noise, dtype=param.dtype).view_as(param) * problem.noise)
        return loss

    for step in range(problem.steps):
        # the closure's loss is f at the iterate before this step: no extra evaluation per step
        if caps.needs_closure and caps.step_returns_loss:
            loss = opt.step(closure)
        else:  # a step that takes a closure for its further passes (SAM) returns no loss
            loss = closure()
            opt.step(closure) if caps.needs_closure else opt.step()
        gap = loss.item() - problem.f_min
        if not math.isfinite(gap) or gap > 1e8:
            return math.inf, None, path
        gaps.append(gap)
        if first is None and gap < problem.tolerance:
            first = step
        t = param.detach().view(2)
        path.append((t[0].item(), t[1].item()))
    with torch.no_grad():
        gaps.append(float(problem.f(param.view(2))) - problem.f_min)
    if not math.isfinite(gaps[-1]):
        return math.inf, None, path
    if first is None and gaps[-1] < problem.tolerance:
        first = problem.steps
    tail = max(1, problem.steps // 10)
    measured = sum(gaps[-tail:]) / tail if problem.noise else gaps[-1]
    return measured, (None if problem.noise else first), path


def check(optimizer: str, problem: Problem) -> Outcome:
    """The optimizer on the problem at each grid learning rate; the best one decides."""
    best = None
    for lr in LRS:
        gap, first, path = run_one(optimizer, problem, lr)
        if best is None or gap < best[1]:
            best = (lr, gap, first, path)
    lr, gap, first, path = best
    return Outcome(optimizer, problem.name, gap < problem.tolerance, lr, gap, first, path)


def _check(pair: tuple[str, str]) -> Outcome:
    return check(pair[0], PROBLEMS[pair[1]])


def check_all(optimizers: list[str] | None = None, problems: list[str] | None = None,
              jobs: int = 1) -> list[Outcome]:
    """Every optimizer on every problem; ``jobs`` forked processes share the pairs (each pair is a few
    thousand tiny steps, so one thread each)."""
    pairs = [(o, p) for p in (problems or list(PROBLEMS)) for o in (optimizers or OPTIMIZERS.names())]
    if jobs <= 1:
        return [_check(pair) for pair in pairs]
    import multiprocessing as mp

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # fork: the children see plugins registered in this process
        with mp.get_context("fork").Pool(jobs) as pool:
            return pool.map(_check, pairs, chunksize=1)
    finally:
        torch.set_num_threads(threads)


def summary(outcomes: list[Outcome]) -> str:
    """Markdown: a pass/fail grid (optimizer × problem) with the best learning rate, then the criteria."""
    problems = list(dict.fromkeys(o.problem for o in outcomes))
    optimizers = list(dict.fromkeys(o.optimizer for o in outcomes))
    cell = {(o.optimizer, o.problem): o for o in outcomes}
    lines = ["| optimizer | " + " | ".join(problems) + " | passed |",
             "|---|" + "---|" * len(problems) + "---|"]
    for name in optimizers:
        row = [cell[name, p] for p in problems]
        text = [("pass" if o.passed else "FAIL") + f" (lr {o.lr:.0e}" + (f", {o.steps_to_pass} steps)" if o.steps_to_pass
                                                                          else ")") for o in row]
        lines.append(f"| {name} | " + " | ".join(text) + f" | {sum(o.passed for o in row)}/{len(row)} |")
    lines += ["", "Criteria (at the best learning rate of " + ", ".join(f"{lr:.0e}" for lr in LRS) + "):", ""]
    lines += [f"- `{p}`: {PROBLEMS[p].criterion}" for p in problems]
    return "\n".join(lines) + "\n"


def plot(outcomes: list[Outcome], folder: Path) -> list[Path]:
    """One figure per problem: contours, and each optimizer's trajectory at its best learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in dict.fromkeys(o.problem for o in outcomes):
        p = PROBLEMS[name]
        x0, x1, y0, y1 = p.box
        xs, ys = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        grid = torch.tensor(np.stack([xs, ys]))
        zs = p.f(grid).numpy() - p.f_min
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.contour(xs, ys, np.log10(np.maximum(zs, 1e-6) + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
        mine = [o for o in outcomes if o.problem == name]
        colors = plt.cm.tab20(np.linspace(0, 1, max(len(mine), 2)))  # tab10 repeats past ten optimizers
        for o, color in zip(mine, colors):
            xy = np.array(o.path)
            ax.plot(xy[:, 0], xy[:, 1], lw=1.2, color=color, marker="." if len(xy) < 60 else None, ms=3,
                    label=f"{o.optimizer} (lr {o.lr:.0e}){'' if o.passed else ' ✗'}")
        ax.plot(*p.start, "ko")
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"{name}: {p.criterion}", xlabel="θ₁", ylabel="θ₂")
        ax.legend(fontsize=7, loc="upper right", ncol=2)
        out = folder / f"{name}.png"
        save_figure(fig, out, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(out)
    return paths
