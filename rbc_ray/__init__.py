"""rbc-ray: multi-agent RL for real-business-cycle economies and structural RL, on Ray."""

__version__ = "0.1.0"
