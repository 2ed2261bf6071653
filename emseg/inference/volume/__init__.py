"""Volumes bigger than memory: lazy readers, OME-Zarr outputs, block-wise prediction on Dask."""
