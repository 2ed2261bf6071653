"""Preprocessing: fetch, convert, split and augment the raw stacks."""

