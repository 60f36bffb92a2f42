"""rft-sandbox: a secure code-execution reward service for RL fine-tuning."""

__version__ = "0.1.0"
