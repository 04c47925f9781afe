"""Optimizer unit tests (Schaul et al. 2014): the problems are what they claim, known optimizers get
their known results, a broken optimizer fails, and the command writes its table and plots."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import harness_cli

from harness.optimizer_checks import PROBLEMS, check, check_all, run_one


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_each_problem_has_its_stated_minimum(name):
    p = PROBLEMS[name]
    minima = {"quadratic": (0, 0), "valley": (0, 0), "rosenbrock": (1, 1), "saddle": (0, 1), "cliff": (4, 0),
              "noisy": (0, 0)}
    at = torch.tensor(minima[name], dtype=torch.float64, requires_grad=True)
    value = p.f(at)
    value.backward()
    assert value.item() == pytest.approx(p.f_min, abs=1e-6)
    assert float(at.grad.norm()) < 1e-6  # a stationary point
    assert float(p.f(torch.tensor(p.start, dtype=torch.float64))) - p.f_min > 50 * p.tolerance  # far from it


def test_the_saddle_starts_at_a_saddle_and_the_valley_is_rotated():
    h = torch.autograd.functional.hessian(PROBLEMS["saddle"].f, torch.zeros(2, dtype=torch.float64))
    assert torch.linalg.eigvalsh(h).tolist() == pytest.approx([-1.0, 2.0])  # one way down
    h = torch.autograd.functional.hessian(PROBLEMS["valley"].f, torch.zeros(2, dtype=torch.float64))
    assert abs(float(h[0, 1])) == pytest.approx(49.5)  # not axis-aligned: (κ − 1)/2 off the diagonal


def test_known_optimizers_get_their_known_results():
    # Ill-conditioning (κ = 100) is the classic case for momentum over plain SGD; the rotated valley
    # takes away the advantage AdaGrad's per-coordinate scaling has on the axis-aligned bowl.
    outcomes = {(o.optimizer, o.problem): o for o in check_all(["sgd", "momentum", "adagrad"],
                                                               ["quadratic", "valley", "saddle"], jobs=2)}
    assert not outcomes["sgd", "quadratic"].passed and outcomes["momentum", "quadratic"].passed
    assert outcomes["momentum", "valley"].passed and outcomes["sgd", "saddle"].passed
    assert outcomes["adagrad", "quadratic"].passed and not outcomes["adagrad", "valley"].passed


def test_noise_is_seeded_and_divergence_is_a_failure():
    a, _, _ = run_one("sgd", PROBLEMS["noisy"], 0.1)
    b, _, _ = run_one("sgd", PROBLEMS["noisy"], 0.1)
    assert a == b and a > 0
    gap, first, _ = run_one("sgd", PROBLEMS["quadratic"], 3.0)  # lr far above 2/κ
    assert math.isinf(gap) and first is None


BROKEN = '''
import torch
from typing import Annotated
from harness.components import OPTIMIZERS
from harness.registry import Range


class Uphill(torch.optim.SGD):
    def step(self, closure=None):
        self.n = getattr(self, "n", 0) + 1
        if self.n % 2:  # the wrong sign on every other step
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad.neg_()
        return super().step(closure)


@OPTIMIZERS.register("uphill_momentum")
def uphill(params, *, lr: Annotated[float, Range(gt=0)] = 0.01):
    """Momentum with a sign bug."""
    return Uphill(params, lr=lr, momentum=0.9)
'''


def test_the_command_catches_a_broken_optimizer_and_draws_trajectories(tmp_path):
    (tmp_path / "uphill.py").write_text(BROKEN)
    r = harness_cli("optimizer-checks", "--plugin", tmp_path / "uphill.py", "--optimizer", "uphill_momentum,momentum",
                    "--problem", "quadratic,saddle", "--require", "quadratic", "--out", tmp_path / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "uphill_momentum fails required problem quadratic" in r.stderr
    assert "momentum fails" not in r.stderr.replace("uphill_momentum fails", "")
    assert "| uphill_momentum | FAIL" in r.stdout and "| momentum | pass" in r.stdout
    for name in ("quadratic", "saddle"):
        png = tmp_path / "out" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "Schaul" in (tmp_path / "out" / "summary.md").read_text()
