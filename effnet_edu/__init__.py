"""effnet-edu: EfficientNet (Tan & Le, 2019) to learn from and to use.

    >>> import effnet_edu as ee
    >>> model = ee.build("b0")                      # Table 1's baseline
    >>> ee.resolve(phi=1.0).resolution              # compound scaling: 224 * 1.15
    258
    >>> model = ee.pretrained("lite0")              # real ImageNet weights, offline

Where things live: ``scaling`` (rounding and the compound rule), ``arch`` (Table 1 and the family as data),
``model`` (the network), ``accounting`` (parameters and multiply-adds without building anything), ``weights``
(torchvision/timm/Lite import), ``images`` (preprocessing, photos, class names), ``cam`` (class activation maps),
``train`` (the ImageNet recipe), ``paper`` (Tables 2 and 4 as data), ``latency`` (fair CPU timing, bytes moved),
``cli`` (the ``effnet-edu`` command). Nothing here imports Jupyter, ipywidgets
or matplotlib.
"""

from .accounting import Report, count
from .arch import B0_STAGES, FAMILY, BlockSpec, EfficientNetConfig, StageRow, StageSpec, blocks, resolve, stages
from .model import EfficientNet, MBConv, SqueezeExcitation, build
from .scaling import ScalingError, compound, round_filters, round_repeats, round_resolution
from .weights import WeightsError, from_timm, from_torchvision, load_weights, pretrained

__version__ = "0.1.0"  # the one version string: pyproject.toml reads it (dynamic version)

__all__ = [
    "B0_STAGES", "FAMILY", "Report", "count", "BlockSpec", "EfficientNet", "EfficientNetConfig", "MBConv",
    "ScalingError",
    "SqueezeExcitation", "StageRow", "StageSpec", "WeightsError", "blocks", "build", "compound", "from_timm",
    "from_torchvision", "load_weights", "pretrained", "resolve", "round_filters", "round_repeats",
    "round_resolution", "stages",
]
