"""rlrun: a Hydra-config-driven experiment runner for offline and online reinforcement learning."""

__version__ = "0.1.0"
