#!/usr/bin/python3
"""torch_fast.py: the fastest published PyTorch recipe for 99% on MNIST, on the CPU.

The recipe of tuomaso/train_mnist_fast (its final notebook), as bench/race99 races it:
    conv 24 5x5 -> max-pool 2 -> relu -> conv 32 3x3 -> max-pool 2 -> relu
    -> dense 256 -> relu -> dense 10, log-softmax and NLL loss;
    Adam (lr 0.01, betas 0.7 / 0.9) under a one-cycle schedule (PyTorch's OneCycleLR, no
    momentum cycling) over one epoch of batch 256; all 60,000 training images, normalised
    (x / 255 - 0.1307) / 0.3081 and shuffled once; then the 10,000 test images.
The seed sets both the initial weights and the shuffle.

Usage: bench/torch_fast.py --seed S [--data DIR] [--threads N]

Prints one JSON object: seed, threads, train_s (the epoch alone), load_s (reading and
preparing the data), test_acc (%). The time since the process was launched, imports
included, is what bench/race99 measures around it.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_bench import load_split, normalise  # noqa: E402


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5)
        self.conv2 = nn.Conv2d(24, 32, 3)
        self.fc1 = nn.Linear(800, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)

    t0 = time.perf_counter()
    xtr, ytr = load_split(a.data, "train")
    xte, yte = load_split(a.data, "test")
    order = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(a.seed))
    x = normalise(torch.from_numpy(xtr.copy()))[order].contiguous()
    y = torch.from_numpy(ytr.astype("int64"))[order]
    xt, yt = normalise(torch.from_numpy(xte.copy())), torch.from_numpy(yte.astype("int64"))
    load_s = time.perf_counter() - t0

    model = Net()
    batch, lr = 256, 1e-2
    steps = (len(y) - 1) // batch + 1
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.7, 0.9))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                cycle_momentum=False)
    t0 = time.perf_counter()
    model.train()
    for i in range(steps):
        opt.zero_grad()
        loss = F.nll_loss(model(x[i * batch:(i + 1) * batch]), y[i * batch:(i + 1) * batch])
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(yt), 2000):
            correct += (model(xt[i:i + 2000]).argmax(1) == yt[i:i + 2000]).sum().item()
    print(json.dumps({"seed": a.seed, "threads": a.threads, "train_s": round(train_s, 3),
                      "load_s": round(load_s, 3), "test_acc": 100.0 * correct / len(yt)}))


if __name__ == "__main__":
    main()
