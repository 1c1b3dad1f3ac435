"""Speed figures as JSON (`rbc-ray bench env|train|srl`): each bench names its hardware and compares
against a baseline run in the same process (the per-agent loop, RLlib, the paper's A100 times)."""
