"""The inference layer: samplers, the JAX NUTS fast path, the program cache, diagnostics."""
