"""emseg: membrane and neuron segmentation of serial-section electron-microscopy stacks."""

__version__ = "0.1.0"
