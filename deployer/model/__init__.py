"""The model directory: its MLmodel (:mod:`~deployer.model.mlmodel`), signature, paths that
may not escape it, the URIs it comes from and their cache, the files it ships
(:mod:`~deployer.model.files`) and the modules its files reference.

Taking a model in (URI -> directory -> MLmodel + resolved environment) is
:func:`deployer.intake.load_model`, one layer up: the environment is read *from* the model.
"""
