"""The SRL economies: Huggett (partial and general equilibrium), Krusell-Smith and one-asset HANK.
Each model's torch rollout is its definition and the GPU path."""
