"""Pruning for the clock: latency tables, the chain knapsack, widths under MAC and latency budgets."""
