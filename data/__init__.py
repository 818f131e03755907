"""Bundled published runs (installed as ``bayescale.bundled``); see catalog.json."""
