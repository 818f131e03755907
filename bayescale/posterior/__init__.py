"""The posterior layer: intervals and queries on posterior draws."""
