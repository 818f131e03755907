"""The checks layer: prior and posterior predictive checks, calibration, extrapolation scoring."""
