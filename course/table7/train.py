"""Figure 7 / Table 7 at classroom scale: scale one small baseline by depth only, width only, resolution only, and
compound scaling, at matched multiply-adds; train each on the shapes dataset (``data.py``); then measure accuracy
and how well each model's class activation map (CAM, Zhou et al. 2016) covers the object.

    python -m course.table7.train            # ~20-30 min on one CPU core; writes checkpoints/ and results.json
    python -m course.table7.train --models baseline,depth,width &   # or two processes side by side,
    python -m course.table7.train --models compound,resolution      # the second writes results.json
    python -m course.table7.train --quick    # a smoke run (tiny data, one epoch), writes to /tmp

The paper scales B0 to ~1.8B FLOPs (Table 7); we scale a width-0.25, depth-0.25, 96-pixel B0 by the paper's
compound point (d=1.4, w=1.2, r=1.3) and give each single-dimension model the same MACs (to within the steps
that channel rounding and layer counts allow). The CAM is computed for the *true* class, upsampled to the
dataset's native 192 px and scored against the object mask with ``effnet_edu.cam.mean_localisation``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from effnet_edu.cam import IOU_THRESHOLD, classic_cam, mean_localisation
from effnet_edu.model import build
from effnet_edu.weights import SOURCES

from .data import CLASSES, SIZE, make_dataset

HERE = Path(__file__).resolve().parent
BASE = dict(width=0.25, depth=0.25, resolution=96)  # the small baseline: final feature map 3x3
COMPOUND = dict(depth=1.4, width=1.2, resolution=1.3)  # the paper's Table 7 compound point, relative to BASE
TRAIN, TEST, EPOCHS, BATCH, LR = 1600, 500, 8, 64, 4e-3
SEED_TRAIN, SEED_TEST, SEED_MODEL = 0, 1, 0


def macs(kwargs: dict) -> int:
    """Multiply-adds of one image (the paper's "FLOPS"), from the library's accounting when present."""
    try:
        from effnet_edu.accounting import count

        return int(count(num_classes=len(CLASSES), **kwargs).macs)
    except ImportError:  # fall back to PyTorch's counter (2 FLOPs per multiply-add)
        from torch.utils.flop_counter import FlopCounterMode

        model, r = build(num_classes=len(CLASSES), **kwargs), kwargs["resolution"]
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, r, r))
        return counter.get_total_flops() // 2


def matched_models() -> dict[str, dict]:
    """The five Table 7 rows: baseline, compound, and one-dimension models whose MACs are closest to compound's."""
    w, d, r = BASE["width"], BASE["depth"], BASE["resolution"]
    compound = dict(width=round(w * COMPOUND["width"], 4), depth=round(d * COMPOUND["depth"], 4),
                    resolution=round(r * COMPOUND["resolution"]))
    target = macs(compound)
    grids = {  # candidate values for one dimension, the others kept at the baseline's
        "depth": [dict(BASE, depth=round(d * k / 20, 4)) for k in range(20, 121)],  # d x 1 .. 6, steps of 0.05
        "width": [dict(BASE, width=round(w * k / 100, 4)) for k in range(100, 401)],  # w x 1 .. 4, steps of 0.01
        "resolution": [dict(BASE, resolution=s) for s in range(r, 2 * r * 2)],  # every pixel size up to 4x
    }
    out = {"baseline": dict(BASE)}
    for name, candidates in grids.items():
        out[name] = min(candidates, key=lambda kw: (abs(macs(kw) - target), kw[name]))
    out["compound"] = compound
    return out


def prepare(images_uint8: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, r, r) normalised like our ImageNet models (antialiased bilinear resize)."""
    x = images_uint8.permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (SOURCES["ours"].mean, SOURCES["ours"].std))
    return (x - mean) / std


def new_model(kwargs: dict):
    # dropout 0.1 and stochastic depth 0.1: small nets on a small set; the same for every row.
    return build(num_classes=len(CLASSES), dropout=0.1, drop_path=0.1, **kwargs)


def train_one(kwargs: dict, images, labels, epochs: int, log=print):
    torch.manual_seed(SEED_MODEL)
    model = new_model(kwargs)
    steps = epochs * (len(images) // BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(SEED_MODEL)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[i:i + BATCH]
            x = prepare(images[idx], kwargs["resolution"])
            flip = torch.rand(len(idx), generator=generator) < 0.5  # horizontal flips: the only augmentation
            x[flip] = x[flip].flip(-1)
            y = labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            total += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
        log(f"  epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.3f}, train accuracy {correct / total:.3f}")
    return model.eval()


@torch.no_grad()
def calibrate_batchnorm(model, images, resolution: int, batches: int = 10) -> None:
    """Recompute BatchNorm's running statistics as plain averages over a few training batches ("precise BN").

    With TF's momentum 0.01 the running averages of a ~100-step run still remember the first, random-weight
    batches, and the model predicts one class in eval mode. Only the BN layers run in training mode here, so
    stochastic depth and dropout stay off."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # None: cumulative average over all batches seen
        bn.train()
    for i in range(0, min(batches * BATCH, len(images)), BATCH):
        model(prepare(images[i:i + BATCH], resolution))
    for bn in norms:
        bn.momentum = model.config.bn_momentum
    model.eval()


def half_precision_roundtrip(model) -> dict:
    """Store weights as float16 (halves the committed files); the model keeps the rounded values, so the
    reported results are exactly what the committed checkpoints give."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict(state)  # copies back into float32 parameters
    return state


@torch.no_grad()
def evaluate(model, kwargs: dict, images, masks, labels, batch: int = 100) -> dict:
    """Accuracy and the localisation of the true class's CAM (at the native 192 px) against the object masks."""
    model.eval()
    correct, scores = 0, []
    for i in range(0, len(images), batch):
        x = prepare(images[i:i + batch], kwargs["resolution"])
        features = model.forward_features(x)  # (B, C, h, w)
        correct += int((model.forward_head(features).argmax(1) == labels[i:i + batch]).sum())
        maps, _ = classic_cam(features, model.classifier, labels[i:i + batch].tolist(), (SIZE, SIZE))
        part = mean_localisation(maps, masks[i:i + batch])
        scores.append((len(x), part))
    n = len(images)
    out = {"accuracy": correct / n}
    for key in ("pointing", "energy", "iou"):
        out[key] = sum(k * s[key] for k, s in scores) / n
    return out


def load(name: str, folder: Path = HERE / "checkpoints"):
    """A trained Table 7 model from its committed checkpoint, in eval mode; ``model.table7`` holds its row."""
    from effnet_edu.weights import load_checkpoint

    path = Path(folder) / f"{name}.pt"
    kwargs = torch.load(path, map_location="cpu", weights_only=True)["scaling"]
    model = new_model(kwargs)
    model.load_state_dict(load_checkpoint(path))  # float16 on disk -> float32 parameters
    results = Path(folder).parent / "results.json"
    rows = json.loads(results.read_text())["models"] if results.exists() else []
    model.table7 = next((r for r in rows if r["name"] == name), None)
    return model.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 images, 1 epoch, output in /tmp")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: this folder)")
    parser.add_argument("--models", help="comma-separated subset to train (e.g. to run two processes side by "
                                         "side); the others' rows are read from their checkpoints/<name>.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these tiny models gain little from more, and on a busy "
                             "machine extra OpenMP threads spin)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_train, n_test, epochs = (200, 100, 1) if args.quick else (TRAIN, TEST, EPOCHS)
    out = args.out or (Path("/tmp/table7-quick") if args.quick else HERE)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    models = matched_models()
    chosen = list(models) if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(models))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(models)}")

    start = time.perf_counter()
    tr_images, _, tr_labels = (torch.from_numpy(a) for a in make_dataset(n_train, SEED_TRAIN))
    te_images, te_masks, te_labels = (torch.from_numpy(a) for a in make_dataset(n_test, SEED_TEST))
    print(f"dataset: {n_train} train / {n_test} test images generated in {time.perf_counter() - start:.1f} s")

    for name in chosen:
        kwargs = models[name]
        print(f"{name}: {kwargs}, {macs(kwargs) / 1e6:.2f}M MACs", flush=True)
        t0 = time.perf_counter()
        model = train_one(kwargs, tr_images, tr_labels, epochs)
        calibrate_batchnorm(model, tr_images, kwargs["resolution"])
        seconds = time.perf_counter() - t0
        state = half_precision_roundtrip(model)
        torch.save({"scaling": kwargs, "model": state}, out / "checkpoints" / f"{name}.pt")
        scores = evaluate(model, kwargs, te_images, te_masks, te_labels)
        row = {"name": name, **kwargs, "macs": macs(kwargs), "params": sum(p.numel() for p in model.parameters()),
               "feature_map": -(-kwargs["resolution"] // 32), "train_seconds": round(seconds, 1),
               **{k: round(v, 4) for k, v in scores.items()}}
        (out / "checkpoints" / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n")
        print(f"  {seconds:.0f} s; test accuracy {scores['accuracy']:.3f}, pointing {scores['pointing']:.3f}, "
              f"energy {scores['energy']:.3f}, IoU {scores['iou']:.3f}", flush=True)
    rows = [out / "checkpoints" / f"{name}.json" for name in models]
    if not all(path.exists() for path in rows):
        print("some models are not trained yet; results.json is written once all five rows exist")
        return 0
    results = {
        "description": "Table 7 / Figure 7 at classroom scale; see course/table7/train.py",
        "settings": {"base": BASE, "compound_point": COMPOUND, "train_images": n_train, "test_images": n_test,
                     "epochs": epochs, "batch": BATCH, "lr": LR, "seeds": [SEED_TRAIN, SEED_TEST, SEED_MODEL],
                     "classes": list(CLASSES), "cam": "classic CAM of the true class, upsampled to 192 px",
                     "iou_threshold": IOU_THRESHOLD, "torch": torch.__version__, "threads": args.threads},
        "models": [json.loads(path.read_text()) for path in rows],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
