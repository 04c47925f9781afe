"""The engine: build a trial from its spec, train it, evaluate it, return its record."""
from harness.engine.loop import evaluate, run_trial

__all__ = ["evaluate", "run_trial"]
