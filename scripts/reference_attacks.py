#!/usr/bin/env python3
"""APGD-CE and APGD-T of AutoAttack (Croce & Hein's own PyTorch code) on a sparta
checkpoint, for comparison with `sparta eval --suite quick` (issue #21). Not part of CI.

The checkpoint (safetensors, read here with numpy) is loaded into an independent PyTorch
implementation of sparta's CIFAR-style ResNet: 3x3 stem, one or two BasicBlocks per
group at the checkpoint's widths, strides 1/2/2/2, batch norm in evaluation mode
(eps 1e-5), input normalisation (x - mean)/std inside the model, and the SPARTA module of
scripts/torch_peer.py (docs/design.md#dscanet) in the last block of every group when the
activation is `G1-4.Blast`, ReLU otherwise. The first N Fashion-MNIST test images are
attacked with AutoAttack's APGDAttack (loss 'ce') and APGDAttack_targeted (targeted DLR,
9 target classes), 100 iterations, one restart each, L-inf eps = 16/255, as
AutoAttack's standard version runs them. An image counts as broken when clean
misclassified or when either attack breaks it.

Needs torch and numpy, and AutoAttack importable (github.com/fra31/auto-attack; e.g.
put its checkout on PYTHONPATH).

  python3 scripts/reference_attacks.py --checkpoint runs/main-job/relu-adversarial/model.safetensors \
      --data /usr/share/datasets/fashion-mnist --images 1000 --sparta-eval runs/quick/eval.json

With --sparta-eval, it prints the crate's errors from that eval.json beside its own.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import Sparta  # noqa: E402


def read_safetensors(path):
    """Tensors (float32 numpy arrays) and string metadata of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        dtype = {"F32": np.float32, "F64": np.float64}[t["dtype"]]
        tensors[name] = np.frombuffer(data[base + begin : base + end], dtype=dtype).reshape(t["shape"]).astype(np.float32)
    return tensors, meta


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def fashion_mnist_test(folder, n):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise FileNotFoundError(os.path.join(folder, stem))

    x = read_idx(find("t10k-images-idx3-ubyte"))[:n].astype(np.float32) / 255.0
    y = read_idx(find("t10k-labels-idx1-ubyte"))[:n].astype(np.int64)
    return torch.from_numpy(x[:, None]), torch.from_numpy(y)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5)


class Block(nn.Module):
    def __init__(self, cin, cout, stride, sparta):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))
        self.act = Sparta(cout) if sparta else nn.ReLU()

    def forward(self, x):
        o = F.relu(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        return self.act(o + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        widths, c = config["widths"], config["in_channels"]
        blocks = {"Small": 1, "R18": 2}[config["depth"]]
        act = config["activation"]
        if act not in ("relu", "G1-4.Blast"):
            raise SystemExit(f"activation {act!r}: this reference builds relu and G1-4.Blast only")
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"]).view(1, -1, 1, 1))
        self.conv1 = nn.Conv2d(c, widths[0], 3, 1, 1, bias=False)
        self.bn1 = bn(widths[0])
        self.groups = nn.ModuleList()
        cin = widths[0]
        for g, width in enumerate(widths):
            group = nn.ModuleList()
            for i in range(blocks):
                sparta = act == "G1-4.Blast" and i == blocks - 1
                group.append(Block(cin, width, 2 if g > 0 and i == 0 else 1, sparta))
                cin = width
            self.groups.append(group)
        self.fc = nn.Linear(cin, config["classes"])

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1((x - self.mean) / self.std)))
        for group in self.groups:
            for block in group:
                h = block(h)
        return self.fc(h.mean(dim=(2, 3)))

    def load(self, tensors):
        """Checkpoint names (`layer2.0.shortcut.conv.weight`) to this module's."""
        state = {}
        own = dict(self.state_dict())
        for name, value in tensors.items():
            if name.startswith("optim."):
                continue  # the SGD state saved beside the model
            key = name
            if key.startswith("layer"):
                g, rest = key[len("layer") :].split(".", 1)
                key = f"groups.{int(g) - 1}.{rest}"
            key = key.replace("shortcut.conv.", "shortcut.0.").replace("shortcut.bn.", "shortcut.1.")
            key = key.replace("sparta.", "act.")
            if key not in own:
                raise SystemExit(f"checkpoint tensor {name} has no place in the reference model")
            state[key] = torch.from_numpy(value).reshape(own[key].shape)
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked") and k not in ("mean", "std")]
        if missing:
            raise SystemExit(f"not in the checkpoint: {missing}")
        self.load_state_dict(state, strict=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--epsilon", type=float, default=16.0, help="in 1/255 units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sparta-eval", help="the crate's eval.json on the same images, to compare")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args()
    from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    torch.set_num_threads(os.cpu_count() or 1)
    tensors, meta = read_safetensors(a.checkpoint)
    config = json.loads(meta["config"])
    model = ResNet(config)
    model.load(tensors)
    model.eval()
    x, y = fashion_mnist_test(a.data, a.images)
    eps = a.epsilon / 255.0
    with torch.no_grad():
        clean_wrong = torch.cat([model(xb).argmax(1) != yb for xb, yb in zip(x.split(a.batch), y.split(a.batch))])
    attacks = {
        "APGD-CE": APGDAttack(model, n_iter=a.iterations, norm="Linf", eps=eps, loss="ce", seed=a.seed, device="cpu"),
        "APGD-T": APGDAttack_targeted(model, n_iter=a.iterations, norm="Linf", eps=eps, n_target_classes=9, seed=a.seed, device="cpu"),
    }
    result = {"checkpoint": a.checkpoint, "images": len(y), "clean_error": clean_wrong.float().mean().item()}
    worst = clean_wrong.clone()
    for name, attack in attacks.items():
        start = time.time()
        wrong = []
        for xb, yb in zip(x.split(a.batch), y.split(a.batch)):
            adv = attack.perturb(xb, yb)
            assert (adv - xb).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
            with torch.no_grad():
                wrong.append(model(adv).argmax(1) != yb)
        wrong = torch.cat(wrong) | clean_wrong
        worst |= wrong
        result[name] = wrong.float().mean().item()
        print(f"{name}: {100 * result[name]:.1f} % error ({time.time() - start:.0f} s)", file=sys.stderr)
    result["worst case"] = worst.float().mean().item()
    rows = [("clean", "clean_error"), ("APGD-CE", "APGD-CE"), ("APGD-T", "APGD-T"), ("worst case", "worst case")]
    theirs = None
    if a.sparta_eval:
        report = json.load(open(a.sparta_eval))
        theirs = {"clean_error": report["clean_error"], "worst case": report["worst_case_error"]}
        for r in report["attacks"]:
            # The crate names an attack with its iterations: APGD-CE-100 is APGD-CE here.
            name = r["name"].removesuffix(f"-{a.iterations}")
            theirs[name] = r["adversarial_error"]
    print(f"| {os.path.basename(os.path.dirname(a.checkpoint)) or a.checkpoint} | AutoAttack | sparta |")
    print("|---|---:|---:|")
    for label, key in rows:
        ours = f"{100 * theirs[key]:.1f} %" if theirs and key in theirs else ""
        print(f"| {label} | {100 * result[key]:.1f} % | {ours} |")
    if a.out:
        json.dump(result, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
