"""effnet-edu widgets: thin ipywidgets layers over the pure functions of ``effnet_edu``.

Installed as ``effnet_edu_widgets`` (this folder is ``widgets/`` in the repository):

    from effnet_edu_widgets import ScalingExplorer
"""

from .block import BlockExplorer
from .cam import CamExplorer
from .elastic import ElasticExplorer
from .scaling import ScalingExplorer

__all__ = ["BlockExplorer", "CamExplorer", "ElasticExplorer", "ScalingExplorer"]
