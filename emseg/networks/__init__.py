"""Networks: the registry of MONAI architectures, the affinity targets, the model file and what a model predicts.

* [`emseg.networks.architectures`][emseg.networks.architectures]: the networks `model.arch` names,
  built for any input size;
* [`emseg.networks.affinities`][emseg.networks.affinities]: the affinity target and its behaviour
  under flips and turns;
* [`emseg.networks.model_file`][emseg.networks.model_file]: the model file, weights plus
  everything needed to apply them;
* [`emseg.networks.prediction`][emseg.networks.prediction]: what a model says about one slice.
"""
