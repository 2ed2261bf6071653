"""Data in and out: image files, atomic writes, the converted data set on disk, synthetic EM-like stacks."""
