"""damgl-bench: reproducible evaluation of gradient losses for infrared-visible fusion."""

__version__ = "0.1.0"
