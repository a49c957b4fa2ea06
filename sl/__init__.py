"""sl: subliminal learning experiments (Cloud et al. 2025, arXiv 2507.14805)."""

__version__ = "0.1.0"
