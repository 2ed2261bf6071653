"""Volumes bigger than memory: lazy readers, OME-Zarr outputs, block-wise prediction on Dask.

`emseg predict` sends an OME-Zarr, an HDF5 dataset or a large TIFF this way:

* [`sources`][emseg.inference.volume.sources]: lazy readers behind one interface
  ([`VolumeSource`][emseg.inference.volume.sources.VolumeSource]);
* [`blocks`][emseg.inference.volume.blocks]: block-wise prediction whose block cores equal the
  whole-slice prediction;
* [`stitching`][emseg.inference.volume.stitching]: cell labels numbered consistently across
  block borders;
* [`omezarr`][emseg.inference.volume.omezarr]: OME-Zarr outputs with a multiscale pyramid;
* [`engine`][emseg.inference.volume.engine]: where the blocks run (this process, or Dask);
* [`blockwise`][emseg.inference.volume.blockwise]: the passes of a volume run, restartable.
"""
