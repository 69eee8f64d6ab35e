"""vlm-harness: benchmark and evaluate vision-language models running on MLX."""

__version__ = "0.1.0"
