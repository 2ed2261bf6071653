"""emseg in napari: segment, measure, correct and fine-tune without leaving the viewer (`napari -w emseg`).

An npe2 plugin (manifest `napari.yaml`, entry point `napari.manifest`), installed with the
`napari` extra: `pip install -e ".[napari]"`. The widgets run emseg's own code paths
(`emseg predict`'s in-memory prediction, the trainer's fine-tuning entry) on worker threads;
nothing here is imported by the rest of the package, so the core install needs no Qt.
"""
