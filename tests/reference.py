"""Reference numbers that several test files check against, each with its primary source.

Adding a family member (a B8, say) means one row in ``effnet_edu.arch.FAMILY`` plus its numbers here.

Sources:
- Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
  (arXiv:1905.11946), Table 2 gives these rounded (5.3M parameters, 0.39B FLOPS for B0). The paper's FLOPS are
  multiply-adds of the convolutions and the FC layer (one multiply-add = one FLOP).
- torchvision's released ImageNet weights, ``EfficientNet_B<n>_Weights.IMAGENET1K_V1.meta``: ``num_params``
  (exact parameter counts, 1000 classes; timm's ``efficientnet_b<n>`` agree to the parameter) and ``_ops``
  (GFLOPS, i.e. billions of multiply-adds at the weights' evaluation crop).
- timm's ``efficientnet_lite<n>`` (the official TF Lite release ported): exact parameter counts of Lite0-Lite4.
- The official TensorFlow code (github.com/tensorflow/tpu, models/official/efficientnet: ``efficientnet_builder.py``
  ``efficientnet_params`` and ``lite/efficientnet_lite_builder.py``): each member's width, depth, resolution and
  dropout.
"""

# (width, depth, resolution, dropout) of every released member (the official builders).
COEFFICIENTS = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4), "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
    "lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2), "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3), "lite4": (1.4, 1.8, 300, 0.3),
}

# Exact parameter counts, 1000 classes (torchvision meta["num_params"]; timm's efficientnet_lite* for Lite).
PARAMS = {
    "b0": 5_288_548, "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232, "b4": 19_341_616, "b5": 30_389_784,
    "b6": 43_040_704, "b7": 66_347_960,
    "lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072, "lite3": 8_197_096, "lite4": 13_006_568,
}

# Conv + FC multiply-adds in billions at Table 2's resolutions, with the decimals they are given to:
# torchvision meta["_ops"], except B2, which torchvision evaluates at 288 px (1.088); at Table 2's 260 px
# torch.utils.flop_counter counts 0.994B multiply-adds for torchvision's efficientnet_b2 (torch 2.14, 2026-11).
MACS_BILLIONS = {
    "b0": (0.386, 3), "b1": (0.687, 3), "b2": (0.994, 3), "b3": (1.827, 3), "b4": (4.394, 3),
    "b5": (10.27, 2), "b6": (19.07, 2), "b7": (37.75, 2),
}

