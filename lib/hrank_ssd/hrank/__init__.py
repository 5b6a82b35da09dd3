"""HRank itself: feature-map ranks, filter-selection criteria and the physical pruning of a net."""
