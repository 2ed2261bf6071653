"""Model sharing: the model bundled in the package, and BioImage Model Zoo packages."""
