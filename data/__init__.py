"""Bundled published runs (installed as ``bayescale.data``); see catalog.json."""
