"""skintern: distill a teacher's chain of thought into a small language model, the SKIntern way."""

__version__ = "0.1.0"
