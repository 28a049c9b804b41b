#!/usr/bin/env python3
"""Compares sparta's SPARTA layer (f64 values written by `cargo run --release --example
torch_cross_check -- DIR`) with the independent PyTorch module of scripts/torch_peer.py
loaded with the same weights: output, input gradient and every parameter gradient,
max |difference| over max |value|. Needs torch and safetensors.

The one intended difference: sparta's gate passes the gradient at x = 0 (dX = dY·g·[x ≥ 0],
the paper's convention, docs/design.md#gradients), PyTorch's ReLU does not; those elements are
counted and left out of the dx comparison.
"""

import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import Sparta  # noqa: E402


def main(folder):
    torch.set_default_dtype(torch.float64)
    worst = 0.0
    for tag in ["small", "wide"]:
        vals = {}
        for line in open(os.path.join(folder, f"{tag}.values.txt")):
            key, *v = line.split()
            vals[key] = [float(f) for f in v]
        n, c, h, w = (int(v) for v in vals.pop("shape"))
        vals = {k: torch.tensor(v) for k, v in vals.items()}
        layer = Sparta(c)
        params = dict(layer.named_parameters())
        weights = load_file(os.path.join(folder, f"{tag}.weights.safetensors"))
        layer.load_state_dict({k: v.double().reshape(params[k].shape) for k, v in weights.items()})
        x = vals["x"].reshape(n, c, h, w).requires_grad_(True)
        y = layer(x)
        names = [k for k, _ in layer.named_parameters()]
        grads = torch.autograd.grad(y, [x] + list(layer.parameters()), vals["dy"].reshape(n, c, h, w))
        at_zero = vals["x"] == 0
        rows = [("y", vals["y"], y.detach().flatten(), None),
                ("dx", vals["dx"], grads[0].flatten(), ~at_zero)]
        rows += [(f"d.{k}", vals[f"d.{k}"], g.flatten(), None) for k, g in zip(names, grads[1:])]
        print(f"{tag}: N={n} C={c} H={h} W={w}, Co={layer.co}; {int(at_zero.sum())} x == 0 element(s) left out of dx")
        for name, ours, theirs, keep in rows:
            if keep is not None:
                ours, theirs = ours[keep], theirs[keep]
            rel = float((ours - theirs).abs().max() / theirs.abs().max())
            worst = max(worst, rel)
            print(f"  {name:16} {rel:.2e}")
    print(f"worst relative difference {worst:.2e}")
    sys.exit(0 if worst < 1e-10 else 1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "xc")
