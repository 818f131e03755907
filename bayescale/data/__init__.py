"""The data layer: validated runs and curves tables, bundled data sets."""
