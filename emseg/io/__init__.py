"""Data in and out: image files, atomic writes, the converted data set on disk, synthetic EM-like stacks.

* [`emseg.io.images`][emseg.io.images]: TIFF, PNG and JPEG readers and writers;
* [`emseg.io.stacks`][emseg.io.stacks]: a stack from any layout (multi-page TIFF, folder of slices, OME-Zarr, HDF5)
  with the voxel size its files carry: the one reader of pixel sizes;
* [`emseg.io.atomic`][emseg.io.atomic]: the one way emseg writes a file or a folder, and JSON;
* [`emseg.io.dataset`][emseg.io.dataset]: the converted PNG data set under `data/`, read slice by slice;
* [`emseg.io.synthetic`][emseg.io.synthetic]: EM-like stacks with labels, for trying emseg and for the tests.
"""
