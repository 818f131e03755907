"""The methods layer: parametric fits, IsoFLOP, envelope, Kaplan L(N, S); their results."""
