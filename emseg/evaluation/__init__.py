"""Evaluation: the ISBI 2012 metrics, the evaluate stage, cross-validation and its statistics, FLOPs and experiments.

* [`metrics`][emseg.evaluation.metrics]: the ISBI 2012 scores, as Fiji's official scorer;
* [`evaluate`][emseg.evaluation.evaluate]: the evaluate stage;
* [`crossval`][emseg.evaluation.crossval] and [`statistics`][emseg.evaluation.statistics]:
  cross-validation over every labelled slice, with block-bootstrap intervals;
* [`flops`][emseg.evaluation.flops]: what a run costs, counted in FLOPs;
* [`experiments`][emseg.evaluation.experiments]: reading finished DVC experiments.
"""

