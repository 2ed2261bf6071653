"""Evaluation: ISBI 2012 metrics and the evaluate stage."""

