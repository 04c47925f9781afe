"""Launchers: where trials run. The local pool's names load on first use, so that reading the SLURM
queue (``harness status``) does not import the engine and torch."""
__all__ = ["cpu_count", "run_local"]


def __getattr__(name: str):
    if name in __all__:
        from harness.launch import local

        return getattr(local, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
