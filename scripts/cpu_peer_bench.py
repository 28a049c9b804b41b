#!/usr/bin/env python3
"""sparta against PyTorch eager on the CPU, in one run, with PyTorch time / ours per row
(issue 23). Not part of CI: it needs torch (pip install torch numpy) and takes about
ten minutes on a 2-core machine.

Each workload runs as the crate's `examples/cpu_peer_timing.rs` prints it, then as its
PyTorch peer here, back to back, with the same thread count (default: all cores), f32,
--rounds times in alternation; each side reports its fastest round (shared machines
slow down in bursts, and the fastest round is the least disturbed). --baseline takes a
second cpu_peer_timing binary (say, built from an older commit) and times it in the
same rounds, as a "before" column:

  layer        SPARTA layer forward + backward (gradients of x and every parameter) at
               the ResNet-18 shapes, N = 128: `Sparta` of scripts/torch_peer.py.
  conv         the 3×3 stride-1 convolution C → C of each ResNet-18 group, N = 128:
               forward, input gradient and weight gradient, each timed apart
               (`F.conv2d` and `torch.ops.aten.convolution_backward`).
  resnet18     one ResNet-18 training step, batch 128, random CIFAR-shaped data: ReLU
               and SPARTA, standard (PGD 0) and adversarial (targeted PGD-K first).
  epoch        one epoch of the README's main job: small model, PGD-10 adversarial
               training on the first 1,000 Fashion-MNIST images, batch 32, SGD (lr 0.1,
               momentum 0.9, weight decay 1e-4), no augmentation. The PyTorch model is the
               one scripts/reference_attacks.py loads checkpoints into.

  python3 scripts/cpu_peer_bench.py                       # everything
  python3 scripts/cpu_peer_bench.py --only layer --pgd 2  # one workload

Prints a markdown table (median milliseconds; for `epoch`, one timed epoch each) and,
with --json FILE, the raw numbers.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from reference_attacks import ResNet, read_idx  # noqa: E402
from torch_peer import ResNet18, Sparta, pgd_targeted  # noqa: E402

SHAPES = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "cpu_peer_timing")


def ours(binary, *args):
    """The JSON lines of one `cpu_peer_timing` command."""
    out = subprocess.run([binary, *map(str, args)], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def median_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return sorted(runs)[len(runs) // 2]


def torch_layer(c, h, w, repeats):
    torch.manual_seed(0)
    layer = Sparta(c)
    x = torch.rand(128, c, h, w) * 4 - 2
    dy = torch.rand(128, c, h, w) * 4 - 2
    inputs = [x.requires_grad_(True), *layer.parameters()]
    return median_ms(lambda: torch.autograd.grad(layer(x), inputs, dy), 3, repeats)


def torch_conv(c, h, w, repeats):
    """Median ms of the forward, input gradient and weight gradient of one 3×3 conv."""
    torch.manual_seed(0)
    x = torch.rand(128, c, h, w) * 2 - 1
    dy = torch.rand(128, c, h, w) * 2 - 1
    weight = (torch.rand(c, c, 3, 3) * 2 - 1) * 0.1

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    with torch.no_grad():
        return {
            "forward": median_ms(lambda: F.conv2d(x, weight, padding=1), 2, repeats),
            "input_grad": median_ms(backward([True, False, False]), 2, repeats),
            "weight_grad": median_ms(backward([False, True, False]), 2, repeats),
        }


def torch_resnet18_step(act, pgd, steps):
    torch.manual_seed(0)
    model = ResNet18(act == "sparta")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(128, 3, 32, 32)
    labels = torch.randint(0, 10, (128,))

    def step():
        batch = pgd_targeted(model, x, labels, pgd) if pgd else x
        model.train()
        loss = F.cross_entropy(model(batch), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return median_ms(step, 1, steps)


def torch_epoch(act, data_dir, images):
    torch.manual_seed(0)
    config = {
        "depth": "Small", "in_channels": 1, "classes": 10, "widths": [16, 32, 64, 128],
        "activation": "G1-4.Blast" if act == "sparta" else "relu", "mean": [0.5], "std": [0.25],
    }
    model = ResNet(config)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def load(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(data_dir, name)):
                return read_idx(os.path.join(data_dir, name))
        raise SystemExit(f"no {stem} in {data_dir}")

    x = torch.from_numpy(load("train-images-idx3-ubyte")[:images, None].astype(np.float32) / 255.0)
    y = torch.from_numpy(load("train-labels-idx1-ubyte")[:images].astype(np.int64))
    order = torch.randperm(len(y))
    start = time.perf_counter()
    for batch in order.split(32):
        adv = pgd_targeted(model, x[batch], y[batch], 10)
        model.train()
        loss = F.cross_entropy(model(adv), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["layer", "conv", "resnet18", "epoch"], action="append")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=10, help="layer and conv runs timed per side")
    p.add_argument("--steps", type=int, default=3, help="ResNet-18 steps timed per side")
    p.add_argument("--pgd", type=int, default=2, help="PGD steps of the adversarial ResNet-18 step")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2, help="alternations of the sides per workload")
    p.add_argument("--baseline", help="another cpu_peer_timing binary, timed as a 'before' column")
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    only = set(a.only or ["layer", "conv", "resnet18", "epoch"])

    subprocess.run(["cargo", "build", "--release", "--example", "cpu_peer_timing"], cwd=ROOT, check=True)
    torch.set_num_threads(a.threads)
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    binaries = {"sparta": EXAMPLE, **({"before": a.baseline} if a.baseline else {})}

    rows = []

    def measure(name, crate_ms, torch_ms):
        """Runs each side's timer --rounds times, alternating; keeps each side's fastest."""
        best = {}
        for _ in range(max(a.rounds, 1)):
            for side, binary in binaries.items():
                best[side] = min(best.get(side, float("inf")), crate_ms(binary))
            best["pytorch"] = min(best.get("pytorch", float("inf")), torch_ms())
        r = {"workload": name, **{f"{k}_ms": v for k, v in best.items()}, "ratio": best["pytorch"] / best["sparta"]}
        rows.append(r)
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items()) + f", ratio {r['ratio']:.2f}", file=sys.stderr)

    if "layer" in only:
        for c, h, w in SHAPES:
            shape = f"128x{c}x{h}x{w}"
            measure(
                f"SPARTA layer fwd+bwd {shape}",
                lambda b: next(r["ms"] for r in ours(b, "layer", a.repeats, c) if r["shape"] == shape),
                lambda: torch_layer(c, h, w, a.repeats),
            )
    if "conv" in only:
        for c, h, w in SHAPES:
            shape = f"128x{c}x{h}x{w}"
            for pass_ in ("forward", "input_grad", "weight_grad"):
                measure(
                    f"conv 3×3 {shape} {pass_}",
                    lambda b: next(r["ms"] for r in ours(b, "conv", a.repeats, c) if r["pass"] == pass_),
                    lambda: torch_conv(c, h, w, a.repeats)[pass_],
                )
    if "resnet18" in only:
        for pgd in (0, a.pgd):
            for act in ("relu", "sparta"):
                kind = f"PGD-{pgd} adversarial" if pgd else "standard"
                measure(
                    f"ResNet-18 {kind} step, {act}",
                    lambda b: ours(b, "resnet18", act, pgd, a.steps)[0]["ms"],
                    lambda: torch_resnet18_step(act, pgd, a.steps),
                )
    if "epoch" in only:
        for act in ("relu", "sparta"):
            measure(
                f"main job epoch ({a.images} images), {act}",
                lambda b: ours(b, "epoch", act, a.data, a.images)[0]["ms"],
                lambda: torch_epoch(act, a.data, a.images),
            )

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\n{cpu}, {a.threads} threads, PyTorch {torch.__version__} eager, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    before = "before" in binaries
    print("| workload |" + (" sparta before |" if before else "") + " sparta | PyTorch | PyTorch time / ours |")
    print("|---|" + ("---:|" if before else "") + "---:|---:|---:|")
    for r in rows:
        cells = ([f"{r['before_ms']:.1f} ms"] if before else []) + [f"{r['sparta_ms']:.1f} ms", f"{r['pytorch_ms']:.1f} ms", f"{r['ratio']:.2f}"]
        print(f"| {r['workload']} | " + " | ".join(cells) + " |")
    if a.json:
        json.dump({"cpu": cpu, "threads": a.threads, "torch": torch.__version__, "rows": rows}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
