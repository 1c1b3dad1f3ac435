"""What every SRL model is built from: grids and Markov chains, the Young-lottery histogram, market
clearing by interpolation, monotone policy tables, the household base class and shared formulas."""
