"""The model layer: priors, laws, likelihoods, and the model compiled to PyMC and to JAX."""
