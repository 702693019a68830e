"""PyTorch reference for the `monoscope analyze` benchmark (`monoscope bench-analyze`).

Does the same work as src/jobs/analyze.rs on the same shapes, without labels:
random unit-norm image/text pairs, a random-init TopK SAE (unit-norm atoms,
W_enc = W_dec^T, zero biases), then, in batches: encode both modalities, accumulate
MDS sums (a / (a + b) where a + b > eps) and supports, keep each feature's top-m
samples per modality; then EmbSim of those samples, the same for the raw CLIP
dimensions and for d random directions (projections, top-m by projection), the
zscore classes and the WinRates. Prints seconds, and the ratio to monoscope's time
when given its JSON (`monoscope bench-analyze --json FILE`).

    python3 scripts/analyze_reference.py [--pairs 100000] [--d 512] [--features 4096]
        [--k 32] [--top-m 20] [--batch 1024] [--threads N] [--device cpu|cuda]
        [--monoscope-json FILE]

With `--device cuda` the work runs on the GPU (f32, no TF32), the reference for
`monoscope bench-analyze --backend wgpu`; the data is made on the CPU first, so both
devices see the same numbers, and the timer starts once it is on the device.
"""
import argparse
import json
import time

import torch
from cores import usable_cores


def emb_sim(E, idx, valid):
    """Mean pairwise cosine of rows E[idx] per feature; idx [F, m], valid [F, m] bool."""
    X = torch.nn.functional.normalize(E[idx], dim=-1) * valid.unsqueeze(-1)  # [F, m, d]
    G = X @ X.transpose(1, 2)  # [F, m, m]
    n = valid.sum(1).float()
    off = G.sum((1, 2)) - (G.diagonal(dim1=1, dim2=2)).sum(1)
    pairs = n * (n - 1)
    return torch.where(pairs > 0, off / pairs.clamp(min=1), torch.full_like(off, float("nan")))


def top_m(batches, features, m):
    """Running top-m (values, global row indices) per feature over [rows, F] batches."""
    vals = idx = None
    for off, a in batches:
        if vals is None:
            vals = torch.full((features, 0), float("-inf"), device=a.device)
            idx = torch.zeros((features, 0), dtype=torch.long, device=a.device)
        v, i = a.T.topk(min(m, a.shape[0]), dim=1)
        vals, order = torch.cat([vals, v], 1).topk(min(m, vals.shape[1] + v.shape[1]), dim=1)
        idx = torch.cat([idx, i + off], 1).gather(1, order)
    return vals, idx


def win_rate(a, b):
    a, b = a[~a.isnan()], torch.sort(b[~b.isnan()]).values
    below = torch.searchsorted(b, a, right=False).float()
    not_above = torch.searchsorted(b, a, right=True).float()
    return ((below + 0.5 * (not_above - below)).sum() / (len(a) * len(b))).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--top-m", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=usable_cores())
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--monoscope-json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    n, d, K = a.pairs, a.d, a.features
    img = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    W_dec = torch.nn.functional.normalize(torch.randn(K, d, generator=g), dim=1)
    R = torch.nn.functional.normalize(torch.rand(d, d, generator=g) - 0.5, dim=1).T
    img, txt, W_dec, R = (t.to(dev) for t in (img, txt, W_dec, R))
    W_enc, b_enc, b_dec = W_dec.T.contiguous(), torch.zeros(K, device=dev), torch.zeros(d, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()

    def encode(x):
        pre = (x - b_dec) @ W_enc + b_enc
        v, i = pre.topk(a.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, i, v.relu())

    t0 = time.perf_counter()
    with torch.inference_mode():
        ratio, support = torch.zeros(K, device=dev), torch.zeros(K, device=dev)
        enc_i, enc_t = [], []
        for s in range(0, n, a.batch):
            A, B = encode(img[s:s + a.batch]), encode(txt[s:s + a.batch])
            S = A + B
            m = S > 1e-6
            ratio += torch.where(m, A / S.clamp(min=1e-6), torch.zeros_like(A)).sum(0)
            support += m.float().sum(0)
            enc_i.append((s, A))
            enc_t.append((s, B))
        mds = torch.where(support > 0, ratio / support.clamp(min=1), torch.full_like(ratio, float("nan")))
        vi, ii = top_m(enc_i, K, a.top_m)
        vt, it = top_m(enc_t, K, a.top_m)
        sim_i, sim_t = emb_sim(img, ii, vi > 0), emb_sim(txt, it, vt > 0)
        classified = (support >= 10) & ~mds.isnan()
        mu, sd = mds[classified].mean(), mds[classified].std(unbiased=False)
        rates = []
        for E, ours in [(img, sim_i), (txt, sim_t)]:
            for dirs in [torch.eye(d, device=dev), R]:
                v, i = top_m([(s, E[s:s + a.batch] @ dirs) for s in range(0, n, a.batch)], d, a.top_m)
                rates.append(win_rate(ours[classified], emb_sim(E, i, v > 0)))
    secs = time.perf_counter() - t0
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"{a.threads} threads"
    print(f"PyTorch {torch.__version__}, {where}: analyze {n} pairs, d={d}, K={K}, k={a.k}: {secs:.2f} s "
          f"(classes: mean {mu:.3f} std {sd:.3f}; win rates {[round(r, 3) for r in rates]})")
    if a.monoscope_json:
        r = json.load(open(a.monoscope_json))["results"][0]
        print(f"monoscope: {r['seconds']:.2f} s -> speed ratio monoscope/PyTorch = {secs / r['seconds']:.2f}")


if __name__ == "__main__":
    main()
