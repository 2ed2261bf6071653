"""Inference: sliding-window prediction shared by evaluate and `emseg predict`."""

