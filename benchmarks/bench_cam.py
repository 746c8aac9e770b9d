"""CAM latency on CPU vs a plain forward pass, Lite0 at 224 px. Run: python benchmarks/bench_cam.py [--threads 2]

What is timed (one process, interleaved rounds, medians over ``--repeats``), batch 1, the chelsea photo:

- ``forward``: ``model(x)`` under no_grad: the reference every other line is divided by;
- ``cam``: ``effnet_edu.cam.cam(model, x, "cam")``: classic CAM, one forward pass + the weighted sum;
- ``cam refresh``: a new target class from cached features (weighted sum + upsampling only): what
  CamExplorer pays when the class changes;
- ``gradcam``: ``cam(model, x, "gradcam")`` on the head, via the grad-cam package (the graph starts at the
  target layer, so the backward pass is pooling + FC only);
- ``gradcam stage6``: Grad-CAM on an inner stage (a longer backward pass);
- ``overlay png``: blending the map on the 224 px view and PNG-encoding it (the widget's redraw).

Targets (the issue): classic CAM <= 60 ms, Grad-CAM <= 150 ms on 2 threads.
"""

import argparse
import io
import statistics
import time

import torch

from effnet_edu import cam as C
from effnet_edu.images import preprocess, sample_photos
from effnet_edu.weights import pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = pretrained("lite0")
    photo = sample_photos()["chelsea"]
    x = preprocess(model, [photo])
    view = C.model_view(photo, 224)
    with torch.no_grad():
        features = model.forward_features(x)
    maps = C.cam(model, x, "cam").maps[0]

    def forward():
        with torch.no_grad():
            model(x)

    def refresh():
        with torch.no_grad():
            C.classic_cam(features, model.classifier, [285], (224, 224))

    def png():
        C.overlay(view, maps, 0.5).save(io.BytesIO(), format="PNG", compress_level=1)  # as CamExplorer

    cases = {
        "forward": forward,
        "cam": lambda: C.cam(model, x, "cam"),
        "cam refresh": refresh,
        "gradcam": lambda: C.cam(model, x, "gradcam"),
        "gradcam stage6": lambda: C.cam(model, x, "gradcam", layer="stage6"),
        "overlay png": png,
    }
    for fn in cases.values():  # warm-up: first-call allocations, lazy imports (grad-cam, OpenCV)
        fn()
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits every case alike
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    print(f"lite0 at 224 px, batch 1, {args.threads} threads, torch {torch.__version__}, median of {args.repeats}")
    for name, value in ms.items():
        print(f"  {name:<15} {value:8.1f} ms   {value / ms['forward']:5.2f} x forward")
    for name, target in (("cam", 60), ("gradcam", 150)):
        print(f"target {name} <= {target} ms: {'met' if ms[name] <= target else 'MISSED'} ({ms[name]:.1f} ms)")


if __name__ == "__main__":
    main()
