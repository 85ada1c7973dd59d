"""Evaluation metrics: FID/KID, precision/recall, class coverage, memorisation, toy-mode metrics."""
