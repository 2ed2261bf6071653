"""Model sharing: the model bundled in the package, and BioImage Model Zoo packages.

* [`bundled`][emseg.sharing.bundled]: the model `emseg predict` uses when none is given;
* [`bioimageio`][emseg.sharing.bioimageio]: `emseg export`'s BioImage Model Zoo package, for
  ilastik, deepImageJ, QuPath and bioimageio.core.
"""
