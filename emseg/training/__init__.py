"""Training: the train stage's run, its loop, and everything the loop is handed.

* [`run`][emseg.training.run]: a whole training run ([`train`][emseg.training.run.train]): logs,
  checkpoints, DDP ranks;
* [`build`][emseg.training.build]: the run's parts made from params
  ([`build_trainer`][emseg.training.build.build_trainer]);
* [`loop`][emseg.training.loop]: the [`Trainer`][emseg.training.loop.Trainer] and its steps;
* [`sampler`][emseg.training.sampler]: random patches and their targets;
* [`losses`][emseg.training.losses] and [`border_weights`][emseg.training.border_weights]: what is minimised;
* [`validation`][emseg.training.validation]: whole-slice validation, scored the ISBI way;
* [`checkpoints`][emseg.training.checkpoints]: resumable checkpoints;
* [`distributed`][emseg.training.distributed]: DDP under torchrun;
* [`logs`][emseg.training.logs] and [`progress`][emseg.training.progress]: dvclive's logs, and
  how far training has got.
"""

