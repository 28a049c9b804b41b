#!/usr/bin/env python3
"""The PyTorch peer of sparta's GPU benchmarks (issue 7; docs/design.md#measuring).

Two measurements, each printed as one JSON object per line:

  train  ResNet-18 (CIFAR form) with ReLU or SPARTA on the last block of each group,
         one step of the paper's adversarial training: targeted PGD-K examples of a
         batch (model in eval mode; ε = 16/255, step 1/255, random start, target drawn
         uniformly among the wrong classes), then SGD (lr 0.1, momentum 0.9, weight decay
         1e-4) on them. Random CIFAR-shaped data. Reports images/s over the timed steps,
         the parameter count and the peak device memory. `--tf32 off` (sparta's own
         setting: its cuDNN convolutions use FMA math) turns TF32 off for both cuDNN
         and matrix products; `--tf32 on` turns it on for both (PyTorch's default is on
         for cuDNN convolutions, off for matrix products).
  gate   The SPARTA gate Y = max(X,0)·σ(s⊗c) composed from eager ops, forward and
         forward+backward, next to ReLU, at the ResNet-18 CIFAR shapes (N = 128).

The model follows docs/design.md#dscanet exactly (Co = min(256, C); Conv1 C→Co, Conv2 Co→C,
Conv3 C→Co, Conv4 Co→Co+1, all 1×1 with bias; per-sample Conv5 from DPNet), so its
parameter counts must equal sparta's: 11,173,962 (ReLU) and 11,980,558 (SPARTA).

  python3 scripts/torch_peer.py train --act sparta --steps 20 --tf32 off
  python3 scripts/torch_peer.py gate
  python3 scripts/torch_peer.py train --device cpu --batch 2 --steps 1 --warmup 0 --pgd 1
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Sparta(nn.Module):
    """SPARTA activation, docs/design.md#dscanet: DSCANet predicts s [N,H,W] and c [N,C] from x."""

    def __init__(self, c):
        super().__init__()
        co = min(256, c)
        self.co = co
        self.conv1 = nn.Linear(c, co)  # CANet on the pooled vector
        self.conv2 = nn.Linear(co, c)
        self.conv3 = nn.Conv2d(c, co, 1)  # SANet over pixels
        self.conv4 = nn.Linear(co, co + 1)  # DPNet: per-sample Conv5 weights and bias

    def forward(self, x):
        p = x.mean(dim=(2, 3))
        c = self.conv2(F.relu(self.conv1(p)))
        h = F.relu(self.conv3(x))
        d = self.conv4(h.mean(dim=(2, 3)))
        w5, b5 = d[:, : self.co], d[:, self.co]
        s = torch.einsum("nk,nkhw->nhw", w5, h) + b5[:, None, None]
        return F.relu(x) * torch.sigmoid(s[:, None] * c[:, :, None, None])


class Block(nn.Module):
    def __init__(self, cin, cout, stride, sparta):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.act = Sparta(cout) if sparta else nn.ReLU()

    def forward(self, x):
        o = F.relu(self.bn1(self.conv1(x)))
        o = self.bn2(self.conv2(o))
        return self.act(o + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 stem, groups of 2 BasicBlocks at widths 64/128/256/512,
    input normalization inside the model (inputs in [0, 1], as the attacks see them)."""

    def __init__(self, sparta, classes=10):
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.5))
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        blocks, cin = [], 64
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks.append(Block(cin, width, stride, False))
            blocks.append(Block(width, width, 1, sparta))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        h = self.blocks(self.stem((x - self.mean) / self.std))
        return self.fc(h.mean(dim=(2, 3)))


def pgd_targeted(model, x, labels, iterations, eps=16 / 255, step=1 / 255, classes=10):
    """The paper's attack: descend CE toward a random wrong class, project onto the
    ε-ball around x intersected with [0, 1]; the model in eval mode throughout."""
    was_training = model.training
    model.eval()
    target = (labels + torch.randint(1, classes, labels.shape, device=x.device)) % classes
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(iterations):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), target)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() - step * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    model.train(was_training)
    return adv.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_train(a):
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
    torch.manual_seed(a.seed)
    model = ResNet18(a.act == "sparta").to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(a.batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (a.batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        adv = pgd_targeted(model, x, labels, a.pgd)
        model.train()
        loss = F.cross_entropy(model(adv), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - start
    out = {
        "bench": "resnet18_pgd_train_step",
        "framework": f"pytorch {torch.__version__} eager",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "tf32": a.tf32,
        "act": a.act,
        "parameters": params,
        "batch": a.batch,
        "pgd_iterations": a.pgd,
        "steps": a.steps,
        "seconds_per_step": seconds / max(a.steps, 1),
        "images_per_s": a.batch * a.steps / seconds if seconds > 0 else None,
        "last_loss": float(loss.detach()),
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }
    print(json.dumps(out))


def time_op(fn, device, repeats):
    for _ in range(3):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def run_gate(a):
    device = torch.device(a.device)
    for c, hw in [(64, 32), (128, 16), (256, 8), (512, 4)]:
        n = a.batch
        x = torch.randn(n, c, hw, hw, device=device, requires_grad=True)
        s = torch.randn(n, hw, hw, device=device, requires_grad=True)
        cv = torch.randn(n, c, device=device, requires_grad=True)
        dy = torch.randn(n, c, hw, hw, device=device)

        def gate():
            return F.relu(x) * torch.sigmoid(s[:, None] * cv[:, :, None, None])

        def gate_fwd_bwd():
            torch.autograd.grad(gate(), (x, s, cv), dy)

        def relu_fwd_bwd():
            torch.autograd.grad(F.relu(x), (x,), dy)

        times = {
            "relu_fwd": time_op(lambda: F.relu(x.detach()), device, a.repeats),
            "gate_fwd": time_op(lambda: gate().detach(), device, a.repeats),
            "relu_fwd_bwd": time_op(relu_fwd_bwd, device, a.repeats),
            "gate_fwd_bwd": time_op(gate_fwd_bwd, device, a.repeats),
        }
        print(json.dumps({
            "bench": "gate_eager",
            "framework": f"pytorch {torch.__version__} eager",
            "shape": f"{n}x{c}x{hw}x{hw}",
            **{k: v * 1e3 for k, v in times.items()},
            "unit": "ms",
        }))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("--act", choices=["relu", "sparta"], default="sparta")
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--pgd", type=int, default=10)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cuda")
    t.add_argument("--tf32", choices=["off", "on"], default="off")
    g = sub.add_parser("gate")
    g.add_argument("--batch", type=int, default=128)
    g.add_argument("--repeats", type=int, default=50)
    g.add_argument("--device", default="cuda")
    a = p.parse_args()
    run_train(a) if a.what == "train" else run_gate(a)


if __name__ == "__main__":
    main()
