"""Fused C++ CPU rollouts of the SRL models and their hand-written adjoints (fused.py + fused_cpu.cpp),
built on first use; the models' torch rollouts stay the definition and the fallback."""
