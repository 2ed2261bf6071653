"""Configuration: the `params.yaml` schema, the defaults several layers share, and where the pipeline keeps its data.

* [`emseg.config.params`][emseg.config.params]: the schema of `params.yaml`, validated before any work;
* [`emseg.config.defaults`][emseg.config.defaults]: the defaults that the schema, the inference path and
  `emseg predict` share;
* [`emseg.config.layout`][emseg.config.layout]: every folder and file name under `data/`.
"""
