"""Evaluation: identification (fingerprinting) now; metric modules arrive with the training issue."""

from .fingerprinting import functional_connectivity, identification_accuracy

__all__ = ["functional_connectivity", "identification_accuracy"]
