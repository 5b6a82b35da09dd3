"""The detectors: SSD module, priors and box coding, predictor, checkpoints, and one file per net."""
