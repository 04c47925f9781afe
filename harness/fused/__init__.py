"""Fused trials: K compatible trial configurations trained as one stacked model."""
