"""Azure ML target: managed online endpoints (deploy/status/list/delete/predict) and the
``deployer export --target azureml`` bundle.

Public API: :class:`AzureMLTarget` (the ``deployer.targets`` entry point) and
:func:`deployer.targets.azureml.export.export_bundle`. azure-ai-ml is imported only inside
methods, so importing this package (``deployer deploy --help``) needs no Azure SDK.
"""

from deployer.targets.azureml.target import AzureMLTarget

__all__ = ["AzureMLTarget"]
