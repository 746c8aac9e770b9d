"""Section 4's baseline search at classroom scale: how EfficientNet-B0 was *found* before it was scaled.

The paper (Section 4) searches MnasNet's space (Tan et al., 2019) for the network that maximises

    ACC(m) x [FLOPS(m) / T] ^ w,        T = the target FLOPS (400M for B0), w = -0.07,

where FLOPS are multiply-adds (our ``accounting`` counts them, the paper's convention). The reward is soft:
a network twice as costly as T must be 2^0.07 = 1.05 times as accurate to tie, one at half the cost may be
1/1.05 as accurate. The result, B0, is "similar to MnasNet, except ... slightly bigger due to the larger FLOPS
target". Unlike MnasNet the paper optimises FLOPS rather than latency, "since we are not targeting any specific
hardware device".

Here, at classroom scale:

- **the space**: C0's seven MBConv stages (C0 = B0 x width 0.25, depth 0.25, 64 px: the scaling lab's base), with
  their channels and strides fixed; per stage a depthwise kernel (3, 5), an expansion ratio (1, 4, 6),
  squeeze-and-excitation on or off, and 1 or 2 layers: 24^7 = 4.6e9 networks. C0's own shape is one of them
  (kernels and expansions of Table 1, SE everywhere, one layer per stage), so we can see where B0's shape sits.
  Every candidate is a real ``EfficientNet`` (custom ``stage_rows``), so ``accounting.count`` gives its MACs.
- **the proxy**: every candidate is trained with the scaling lab's recipe (``train.fit``), cut to one epoch on
  3,840 training images in batches of 16, and scored on the lab's validation split (never the test split).
  Ranking by a short proxy is what MnasNet does too (5 epochs on ImageNet instead of hundreds); it is noisy, and
  C0 is trained with three seeds to show how noisy.
- **the search**: random search. Regularised evolution (Real et al., 2019) improves on random search by
  exploiting what it has learnt, an advantage that grows with the number of models evaluated; a laptop's 20
  minutes buys a few dozen, and with a one-epoch proxy the noise between seeds is as large as the differences
  between neighbours (C0's seeds show it), so evolution would mostly be selecting noise. Random search has a
  second, teaching advantage: its candidates do not depend on T or w, so the stored candidates are a fair sample
  of the space for *any* T and w, and the notebook can recompute the reward's argmax for other trade-offs without
  training again (an evolved population crowds around the T and w it was run with).

    effnet-edu lab search                       # about 25 minutes on one busy core; resumable
    effnet-edu lab search --quick --out /tmp/s  # a reduced search in a minute or two
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..arch import B0_STAGES, EfficientNetConfig, StageRow, resolve
from ..scaling import round_repeats
from .data import CLASSES
from .families import BASES
from .store import RESULTS
from .train import QUICK, Recipe, accuracy, fit, resized, split

PAPER_W = -0.07  # Section 4: "w = -0.07 is a hyperparameter for controlling the trade-off between accuracy and FLOPS"

# The choices per stage (MnasNet's space has more: skip ops, SE ratio, filter sizes; these are the ones the
# issue's brief and Table 1 name). Channels and strides stay C0's.
KERNELS = (3, 5)
EXPANSIONS = (1, 4, 6)
SE_CHOICES = (True, False)
LAYERS = (1, 2)

WIDTH = BASES["effnet"].width  # 0.25: C0's channels (round_filters of Table 1's channels at width 0.25)
RESOLUTION = BASES["effnet"].resolution  # 64 px
TARGET = 2_000_000  # T: just above C0's 1.96M MACs, as the paper's 400M is just above B0's 386M

# The proxy: the lab's recipe (train.RECIPE) cut to one epoch on 3,840 images, warmup a quarter of it, precise BN
# over 512 images; validation on the lab's 2,000-image validation split. Batches of 16 (240 steps), not the lab's
# 64: at this budget the number of updates is what limits learning. Measured here (2026-11-27, one thread): with
# batches of 64 (60 steps) C0 and ten random candidates all ended with a training loss at chance level and
# validation accuracies of 8-14% (chance 6.25%); with batches of 16, C0 reached 16% for 30% more CPU time.
PROXY = Recipe(train_images=3840, val_images=2000, test_images=2000, epochs=1, batch=16, warmup_epochs=0.25,
               bn_images=512)
QUICK_PROXY = replace(QUICK, train_images=640, val_images=160, batch=16, warmup_epochs=0.25, bn_images=128)
CANDIDATES = 30  # random candidates of the full search (plus C0's shape, three seeds)
QUICK_CANDIDATES = 4
C0_SEEDS = 3  # C0 is trained with seeds seed, seed+1, seed+2: the proxy's noise, measured


@dataclass(frozen=True)
class StageChoice:
    """What the search decides for one MBConv stage (stages 2-8 of Table 1)."""

    kernel_size: int  # depthwise kernel, 3 or 5
    expand_ratio: int  # MBConv1, MBConv4 or MBConv6
    se: bool  # squeeze-and-excitation in the stage's blocks
    layers: int  # 1 or 2 repeats

    @property
    def code(self) -> str:
        """"k5e6s2": kernel 5, expansion 6, SE on ("s"; "n" = none), 2 layers."""
        return f"k{self.kernel_size}e{self.expand_ratio}{'s' if self.se else 'n'}{self.layers}"


Candidate = tuple[StageChoice, ...]  # one choice per stage, stages 2..8


def c0_shape() -> Candidate:
    """C0's own shape in this space: Table 1's kernels and expansions, SE everywhere, B0's layers at depth 0.25
    (ceil(n / 4) = 1 in every stage)."""
    return tuple(StageChoice(r.kernel_size, r.expand_ratio, True, round_repeats(r.layers, BASES["effnet"].depth))
                 for r in B0_STAGES)


def key(candidate: Candidate) -> str:
    """A candidate's name: its stages' codes, "k3e1s1-k3e6s1-..." (stage 2 first)."""
    return "-".join(c.code for c in candidate)


def from_key(name: str) -> Candidate:
    """The inverse of ``key``."""
    stages = []
    for code in name.split("-"):
        k, rest = code[1:].split("e")
        stages.append(StageChoice(int(k), int(rest[:-2]), rest[-2] == "s", int(rest[-1])))
    return tuple(stages)


def config(candidate: Candidate, num_classes: int = len(CLASSES), dropout: float = PROXY.dropout
           ) -> EfficientNetConfig:
    """The candidate as an EfficientNet configuration: C0's width and resolution, its own stage rows (Table 1's
    channels and strides) and depth 1, so each row's layers are exactly the candidate's. No stochastic depth and
    BatchNorm momentum 0.1, as the lab's C0 (``families._effnet``)."""
    if len(candidate) != len(B0_STAGES):
        raise ValueError(f"a candidate has {len(B0_STAGES)} stage choices (stages 2-8), got {len(candidate)}")
    rows = tuple(StageRow(r.name, c.expand_ratio, c.kernel_size, r.stride, r.out_channels, c.layers, c.se)
                 for r, c in zip(B0_STAGES, candidate))
    return resolve(width=WIDTH, depth=1.0, resolution=RESOLUTION, num_classes=num_classes, dropout=dropout,
                   drop_path=0.0, bn_momentum=0.1, stage_rows=rows, name=key(candidate))


def build_candidate(candidate: Candidate, num_classes: int = len(CLASSES), dropout: float = PROXY.dropout):
    """A freshly initialised network for the candidate (weights from torch's RNG: seed it first)."""
    from ..model import EfficientNet

    return EfficientNet(config(candidate, num_classes, dropout))


def describe(candidate: Candidate) -> str:
    """The candidate as Table 1's rows (stages 2-8 at 64 px), one line each."""
    from ..arch import stages

    lines = [f"{'stage':<7}{'operator':<10}{'kernel':>7}{'SE':>5}{'resolution':>12}{'channels':>10}{'layers':>8}"]
    for row, choice in zip(stages(config(candidate))[1:-1], candidate):
        lines.append(f"{row.name:<7}{row.operator:<10}{f'{row.kernel_size}x{row.kernel_size}':>7}"
                     f"{'yes' if choice.se else 'no':>5}{f'{row.resolution}x{row.resolution}':>12}"
                     f"{row.out_channels:>10}{row.layers:>8}")
    return "\n".join(lines)


def reward(accuracy: float, macs: float, target: float = TARGET, w: float = PAPER_W,
           w_above: float | None = None) -> float:
    """Section 4's optimisation goal, ACC(m) x [FLOPS(m) / T]^w (FLOPS = multiply-adds, T the target).

    With one w (the paper's), T multiplies every reward by the same constant T^-w, so it cannot change which
    network wins. MnasNet's general form (Tan et al., 2019, eq. 2) uses w = alpha at or below T and w = beta above;
    ``w_above`` is that beta (None: the paper's single w). alpha = 0, beta = -1 is MnasNet's hard constraint."""
    exponent = w if w_above is None or macs <= target else w_above
    return accuracy * (macs / target) ** exponent


def sample(rng: random.Random) -> Candidate:
    """One uniformly random candidate: each stage's four choices drawn independently."""
    return tuple(StageChoice(rng.choice(KERNELS), rng.choice(EXPANSIONS), rng.choice(SE_CHOICES), rng.choice(LAYERS))
                 for _ in B0_STAGES)


def random_candidates(n: int, seed: int = 0) -> list[Candidate]:
    """``n`` distinct random candidates, C0's shape excluded (it is evaluated on its own); the same for a seed."""
    rng = random.Random(seed)
    seen: set[Candidate] = {c0_shape()}
    out: list[Candidate] = []
    while len(out) < n:
        candidate = sample(rng)
        if candidate not in seen:
            seen.add(candidate)
            out.append(candidate)
    return out


def evaluate(candidate: Candidate, seed: int = 0, recipe: Recipe = PROXY) -> dict:
    """Train the candidate with the proxy recipe; its entry: stages, MACs, params, validation accuracy."""
    from ..accounting import count

    num_classes = len(CLASSES)
    cfg = config(candidate, num_classes, recipe.dropout)
    report = count(cfg)
    model, stats = fit(lambda: build_candidate(candidate, num_classes, recipe.dropout), RESOLUTION, seed, recipe,
                       what=key(candidate))
    return {"name": key(candidate), "stages": [asdict(c) for c in candidate], "macs": report.macs,
            "params": report.params, "seed": seed, "c0": candidate == c0_shape(),
            "val_accuracy": accuracy(model, resized("val", RESOLUTION, recipe), split("val", recipe)[2]), **stats}


def choose(entries: list[dict], target: float = TARGET, w: float = PAPER_W, w_above: float | None = None) -> dict:
    """The entry with the highest reward (ties: the cheaper one)."""
    return max(entries, key=lambda e: (reward(e["val_accuracy"], e["macs"], target, w, w_above), -e["macs"]))


def pareto(entries: list[dict]) -> list[dict]:
    """The accuracy-MACs front: entries no other entry beats on both (fewer or equal MACs, higher accuracy),
    cheapest first."""
    front: list[dict] = []
    for e in sorted(entries, key=lambda e: (e["macs"], -e["val_accuracy"])):
        if not front or e["val_accuracy"] > front[-1]["val_accuracy"]:
            front.append(e)
    return front


def _recipe_tag(recipe: Recipe) -> str:
    return hashlib.sha1(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:8]


def run_search(out: Path = RESULTS, *, quick: bool = False, seed: int = 0, target: float = TARGET,
               w: float = PAPER_W, candidates: int | None = None, threads: int = 1) -> dict:
    """Evaluate C0's shape (``C0_SEEDS`` seeds) and ``candidates`` random candidates, then write ``search.json``
    in ``out``: every candidate's entry, the reward's choice for (T, w), and C0's place.

    Resumable: each evaluated candidate is a file ``out/search-runs/<name>-s<seed>-<recipe>.json``, written
    atomically; a killed search continues where it stopped, and a finished one (or one with another T or w, which
    change no training) only rewrites ``search.json``. Entries of an earlier ``out/search.json`` with the same
    proxy recipe count as finished runs too."""
    from .run import _progress, _write_atomic

    recipe = QUICK_PROXY if quick else PROXY
    n = (QUICK_CANDIDATES if quick else CANDIDATES) if candidates is None else candidates
    jobs = [(c0_shape(), seed + i) for i in range(C0_SEEDS)] + [(c, seed) for c in random_candidates(n, seed)]
    runs = Path(out) / "search-runs"
    runs.mkdir(parents=True, exist_ok=True)
    tag = _recipe_tag(recipe)
    # A search.json already in ``out`` made with the same proxy (the stored results, say) counts as cached runs:
    # re-ranking the package's stored search for another T or w trains nothing.
    previous, previous_wall = {}, None
    try:
        old = json.loads((Path(out) / "search.json").read_text())
        if old.get("proxy") == asdict(recipe):
            previous = {(e["name"], e["seed"]): e for e in old["candidates"]}
            previous_wall = old.get("wall_seconds")
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none there, or unreadable: train
    trained = 0
    start = time.perf_counter()
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    for name in ("train", "val"):  # generate (or load) the data once, before the bar starts
        split(name, recipe)
    bar = _progress(len(jobs), "candidates")
    entries = []
    try:
        for candidate, s in jobs:
            path = runs / f"{key(candidate)}-s{s}-{tag}.json"
            if path.exists():
                entry = json.loads(path.read_text())
            elif (key(candidate), s) in previous:
                entry = previous[key(candidate), s]
            else:
                entry = evaluate(candidate, s, recipe)
                trained += 1
                _write_atomic(path, lambda p: p.write_text(json.dumps(entry, indent=1) + "\n"))
                bar.set_postfix_str(f"{entry['macs'] / 1e6:.2f}M MACs: {entry['val_accuracy']:.3f}")
            entries.append(entry)
            bar.update()
    finally:
        bar.close()
        torch.set_num_threads(saved_threads)
    searched = [e for e in entries if not e["c0"]]
    chosen = choose(searched, target, w)
    results = {
        "description": "Section 4's baseline search at classroom scale: random search over C0's MBConv stages "
                       "(kernel 3/5, expansion 1/4/6, SE on/off, 1-2 layers), reward ACC x (MACs/T)^w on the "
                       "lab's validation split after a short proxy training; see effnet_edu/lab/search.py",
        "space": {"kernels": list(KERNELS), "expansions": list(EXPANSIONS), "se": list(SE_CHOICES),
                  "layers": list(LAYERS), "width": WIDTH, "resolution": RESOLUTION,
                  "stages": [{"name": r.name, "stride": r.stride, "out_channels": r.out_channels}
                             for r in config(c0_shape()).stage_rows]},
        "proxy": asdict(recipe), "seed": seed, "target_macs": target, "w": w,
        "chosen": chosen["name"], "c0": key(c0_shape()),
        "environment": {"torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                        "threads": threads, "date": time.strftime("%Y-%m-%d")},
        # the search's own time: a re-ranking that trained nothing keeps the time of the search it re-ranks
        "wall_seconds": previous_wall if trained == 0 and previous_wall else round(time.perf_counter() - start, 1),
        "train_seconds": round(sum(e["train_seconds"] for e in entries), 1),
        "candidates": entries,
    }
    _write_atomic(Path(out) / "search.json", lambda p: p.write_text(json.dumps(results, indent=1) + "\n"))
    return results


def load(folder: Path = RESULTS) -> dict:
    """The stored ``search.json`` (or one written by ``effnet-edu lab search --out DIR``)."""
    path = Path(folder) / "search.json"
    if not path.is_file():
        raise FileNotFoundError(f"no search results in {folder}: run `effnet-edu lab search` to make them")
    return json.loads(path.read_text())
