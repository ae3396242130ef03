#!/usr/bin/python3
"""torch_bench.py - the PyTorch side of bench/compare: the same network, data and settings as
`mnist bench` / `mnist train`, measured the same way.

Run with Debian's python3-torch (the system interpreter, not a venv or pyenv):

    /usr/bin/python3 bench/torch_bench.py --mode speed --arch "conv 32 3, relu, dense 10" \\
        --batch 64 --threads 2
    /usr/bin/python3 bench/torch_bench.py --mode accuracy --arch SPEC --epochs 1 --batch 64 \\
        --threads 2

The network is built from OUR spec string (the syntax of README.md, "Network spec"), so both
sides run literally the same layers: conv F K [stride=S] [pad=P], maxpool K [stride=S],
avgpool K [stride=S], relu, leakyrelu [SLOPE], bn, dropout P, flatten, dense N (a dense layer
flattens a 4-D input first). Parameters keep PyTorch's default initialisation.

--mode speed prints one JSON object with the keys of `mnist bench --json` (spec, threads,
batch, real_data, mflops_per_image, train_images_per_s, infer_images_per_s, infer_batch,
latency_us_median, latency_us_p90, peak_rss_mb, train_gflops, infer_gflops) plus
torch_version, measured as `mnist bench` does:
  training:  3 warm-up batches, then --train-batches timed ones, each forward + softmax
             cross-entropy + backward + SGD step (lr 0.01, momentum 0.9), train mode (dropout
             on, batch-norm batch statistics), one fixed batch of the first B training images;
  inference: eval mode under torch.inference_mode(), batch --infer-batch from uint8 pixels
             (normalisation, forward and softmax included, as mnist's predict does), repeated
             until >= 2 s or 100 repetitions;
  latency:   the same for one image, --latency-iters times; median and p90;
  RSS:       the peak resident set of the whole process (ru_maxrss), interpreter included.
GFLOP/s use --mflops (bench/compare passes mnist's count for the spec, so both sides share
one FLOP count) or, without it, this script's own count (conv and dense multiply-adds x 2).

--mode latency prints {spec, threads, latency_iters, latency_us_median, latency_us_p90,
torch_version}: half a second of batch inference to warm up, then the latency as above, as
`mnist bench --latency-only` does (bench/compare alternates the two in rounds).

--mode accuracy trains --epochs epochs on the training set (all 60,000 images, or --limit N
first ones) with plain SGD (lr --lr, momentum --momentum, no weight decay, constant rate),
batch --batch, a fresh shuffle every epoch, and the last batch taking the remainder (one
leftover image joins the previous batch, as mnist does), then evaluates the 10,000 test
images. Prints {"accuracy", "train_seconds", ...}.

Inputs are normalised as (x / 255 - 0.1307) / 0.3081 everywhere. IDX files are read directly
(raw or gzip, detected by content) from --data (default data/mnist).
"""
import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081


# ---- data ----------------------------------------------------------------------------------

def read_idx(path):
    """An IDX file (raw or gzip, by content) as a numpy uint8 array of its shape."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            path = p
            break
    else:
        sys.exit(f"torch_bench: {path}: no such file (run scripts/fetch-data)")
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:2] == b"\x1f\x8b":
        buf = gzip.decompress(buf)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        sys.exit(f"torch_bench: {path}: not an unsigned-byte IDX file")
    nd = buf[3]
    dims = struct.unpack(">" + "I" * nd, buf[4:4 + 4 * nd])
    count = int(np.prod(dims)) if nd else 0
    if len(buf) != 4 + 4 * nd + count:
        sys.exit(f"torch_bench: {path}: {len(buf)} bytes, the header says {4 + 4 * nd + count}")
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load_split(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
        sys.exit(f"torch_bench: {data_dir}: {split} images {x.shape} / labels {y.shape}")
    return x, y


def normalise(u8):
    """uint8 tensor (n, 28, 28) -> float (n, 1, 28, 28), (x / 255 - mean) / std."""
    return ((u8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


# ---- the network from a spec string --------------------------------------------------------

def parse_spec(spec):
    """[(name, [numbers...], {key: value})] from 'conv 32 3 pad=1, relu, ...'."""
    items = []
    for i, text in enumerate(spec.split(","), 1):
        words = text.split()
        if not words:
            sys.exit(f"torch_bench: layer {i}: empty")
        args, opts = [], {}
        for w in words[1:]:
            if "=" in w:
                k, v = w.split("=", 1)
                opts[k] = float(v)
            else:
                args.append(float(w))
        items.append((words[0], args, opts, text.strip()))
    return items


def build_net(spec):
    """(nn.Sequential, forward MFLOPs per image counting conv and dense multiply-adds x 2)."""
    layers, shape, flops = [], (1, 28, 28), 0.0

    def need(cond, text, what):
        if not cond:
            sys.exit(f"torch_bench: layer '{text}': {what}")

    for name, a, o, text in parse_spec(spec):
        spatial = len(shape) == 3
        if name == "conv":
            need(spatial and len(a) == 2, text, "want 'conv FILTERS K' on a 3-D input")
            f, k = int(a[0]), int(a[1])
            s, p = int(o.get("stride", 1)), int(o.get("pad", 0))
            c, h, w = shape
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            layers.append(nn.Conv2d(c, f, k, stride=s, padding=p))
            flops += 2.0 * c * k * k * f * oh * ow
            shape = (f, oh, ow)
        elif name in ("maxpool", "avgpool"):
            need(spatial and len(a) == 1, text, f"want '{name} K' on a 3-D input")
            k = int(a[0])
            s = int(o.get("stride", k))
            c, h, w = shape
            layers.append((nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d)(k, stride=s))
            shape = (c, (h - k) // s + 1, (w - k) // s + 1)
        elif name == "relu":
            layers.append(nn.ReLU())
        elif name == "leakyrelu":
            layers.append(nn.LeakyReLU(a[0] if a else 0.01))
        elif name == "bn":
            layers.append(nn.BatchNorm2d(shape[0]) if spatial else nn.BatchNorm1d(shape[0]))
        elif name == "dropout":
            need(len(a) == 1, text, "want 'dropout P'")
            layers.append(nn.Dropout(a[0]))
        elif name == "flatten":
            if spatial:
                layers.append(nn.Flatten())
                shape = (shape[0] * shape[1] * shape[2],)
        elif name == "dense":
            need(len(a) == 1, text, "want 'dense UNITS'")
            if spatial:
                layers.append(nn.Flatten())
                shape = (shape[0] * shape[1] * shape[2],)
            n = int(a[0])
            layers.append(nn.Linear(shape[0], n))
            flops += 2.0 * shape[0] * n
            shape = (n,)
        else:
            sys.exit(f"torch_bench: layer '{text}': unknown layer '{name}'")
    need(len(shape) == 1, spec, "the last layer must be dense")
    return nn.Sequential(*layers), flops / 1e6


# ---- modes ---------------------------------------------------------------------------------

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def single_image_latency(net, px, iters):
    """Median and p90 microseconds of iters single-image predictions (pixels to probabilities),
    the images taken in turn from px; inside inference_mode, net in eval mode."""
    lat = []
    for i in range(iters):
        one = px[i % px.shape[0]:i % px.shape[0] + 1]
        s = time.perf_counter()
        F.softmax(net(normalise(one)), dim=1)
        lat.append((time.perf_counter() - s) * 1e6)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.9)]


def test_pixels(args, n_img):
    """The first n_img test images and labels, or random ones (real False) without the files."""
    try:
        xs, ys = load_split(args.data, "test")  # the smaller file: speed needs only n_img images
        if xs.shape[0] < n_img:
            raise ValueError
        return (torch.from_numpy(xs[:n_img].copy()),
                torch.from_numpy(ys[:n_img].astype(np.int64)), True)
    except (SystemExit, ValueError):
        g = torch.Generator().manual_seed(1)
        return (torch.randint(0, 256, (n_img, 28, 28), dtype=torch.uint8, generator=g),
                torch.randint(0, 10, (n_img,), generator=g), False)


def latency(args):
    """--mode latency: as `mnist bench --latency-only`, half a second of batch inference to
    warm up, then the single-image latency alone."""
    net, _ = build_net(args.arch)
    px, _, _ = test_pixels(args, args.infer_batch)
    net.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            F.softmax(net(normalise(px)), dim=1)
        med, p90 = single_image_latency(net, px, args.latency_iters)
    print(json.dumps({
        "spec": args.arch, "threads": torch.get_num_threads(),
        "latency_iters": args.latency_iters, "latency_us_median": round(med, 1),
        "latency_us_p90": round(p90, 1), "torch_version": torch.__version__,
    }))


def speed(args):
    net, mflops = build_net(args.arch)
    if args.mflops is not None:
        mflops = args.mflops
    n_img = max(args.batch, args.infer_batch)
    px, labels, real = test_pixels(args, n_img)
    x, y = normalise(px[:args.batch]), labels[:args.batch]
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    # training: 3 warm-up batches, then timed
    net.train()
    t0 = 0.0
    for b in range(args.train_batches + 3):
        if b == 3:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    train_ips = args.train_batches * args.batch / (time.perf_counter() - t0)

    # batch inference, from uint8 pixels to probabilities
    net.eval()
    batch_px = px[:args.infer_batch]
    with torch.inference_mode():
        F.softmax(net(normalise(batch_px)), dim=1)
        reps, t0 = 0, time.perf_counter()
        while True:
            F.softmax(net(normalise(batch_px)), dim=1)
            reps += 1
            if time.perf_counter() - t0 >= args.min_infer_s or reps >= 100:
                break
        infer_ips = reps * args.infer_batch / (time.perf_counter() - t0)

        med, p90 = single_image_latency(net, px, args.latency_iters)
    print(json.dumps({
        "spec": args.arch, "threads": torch.get_num_threads(), "batch": args.batch,
        "real_data": real, "mflops_per_image": round(mflops, 4),
        "train_images_per_s": round(train_ips, 1), "infer_images_per_s": round(infer_ips, 1),
        "infer_batch": args.infer_batch, "latency_us_median": round(med, 1),
        "latency_us_p90": round(p90, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "train_gflops": round(train_ips * 3 * mflops / 1e3, 2),
        "infer_gflops": round(infer_ips * mflops / 1e3, 2),
        "torch_version": torch.__version__,
    }))


def accuracy(args):
    torch.manual_seed(args.seed)
    net, _ = build_net(args.arch)
    xs, ys = load_split(args.data, "train")
    if args.limit:
        xs, ys = xs[:args.limit], ys[:args.limit]
    x_all = normalise(torch.from_numpy(xs.copy()))
    y_all = torch.from_numpy(ys.astype(np.int64))
    del xs, ys
    n, B = x_all.shape[0], args.batch
    batches = (n + B - 1) // B
    if batches > 1 and n % B == 1:
        batches -= 1  # never a batch of one: the leftover image joins the last batch
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    g = torch.Generator().manual_seed(args.seed)
    epoch_s = []
    for _ in range(args.epochs):
        net.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=g)
        for b in range(batches):
            idx = order[b * B:] if b == batches - 1 else order[b * B:(b + 1) * B]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
    del x_all, y_all
    xt, yt = load_split(args.data, "test")
    xt, yt = torch.from_numpy(xt.copy()), torch.from_numpy(yt.astype(np.int64))
    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, xt.shape[0], 1000):
            pred = net(normalise(xt[i:i + 1000])).argmax(dim=1)
            correct += int((pred == yt[i:i + 1000]).sum())
    print(json.dumps({
        "spec": args.arch, "threads": torch.get_num_threads(), "batch": B,
        "epochs": args.epochs, "train_images": n, "lr": args.lr, "momentum": args.momentum,
        "accuracy": round(correct / xt.shape[0], 6), "test_images": int(xt.shape[0]),
        "train_seconds": round(sum(epoch_s), 3),
        "epoch_seconds": [round(s, 3) for s in epoch_s],
        "train_images_per_s": round(n * args.epochs / sum(epoch_s), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "torch_version": torch.__version__,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("speed", "latency", "accuracy"), required=True)
    ap.add_argument("--arch", required=True, help="network spec, mnist's syntax")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--train-batches", type=int, default=50)
    ap.add_argument("--infer-batch", type=int, default=1000)
    ap.add_argument("--latency-iters", type=int, default=500)
    ap.add_argument("--min-infer-s", type=float, default=2.0,
                    help="time batch inference for at least this long (default 2)")
    ap.add_argument("--mflops", type=float, default=None,
                    help="forward MFLOPs per image for the GFLOP/s figures")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if min(args.batch, args.threads, args.train_batches, args.infer_batch,
           args.latency_iters, args.epochs) < 1:
        ap.error("sizes, counts and --threads must be >= 1")
    # Before any parallel work: T intra-op threads, no extra inter-op pool.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.mode == "speed":
        speed(args)
    elif args.mode == "latency":
        latency(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
