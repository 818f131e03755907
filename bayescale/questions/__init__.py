"""The questions layer: planning answers, law comparison, averaging, next-run design."""
