"""PyTorch reference for monoscope's sparse autoencoders (SPEC §1) + training-throughput benchmark.

The Rust port (burn) mirrors these formulas exactly.

Tensor conventions (monoscope, NOT SAELens):
  x      [B, d]   input batch (one row per sample; CLIP embeddings are L2-normalised)
  W_enc  [K, d]   encoder; encode is x @ W_enc.T
  W_dec  [d, K]   decoder; column W_dec[:, j] is atom j (unit L2 norm)
  b_enc  [K]
  b_dec  [d]
  (SAELens stores W_enc [d, K] and W_dec [K, d], i.e. the transposes of these.)

Shared:
  pre    = (x - b_dec) @ W_enc.T + b_enc                          [B, K]
  x_hat  = z @ W_dec.T + b_dec                                    [B, d]
  mse    = mean_b sum_i (x_hat[b,i] - x[b,i])^2                   (squared L2 error, mean over batch)

TopK SAE (default k = 32):
  idx    = indices of the k largest entries of pre[b, :] (per row)
  z[b,j] = max(pre[b,j], 0) if j in idx[b] else 0                  (select top k FIRST, then ReLU;
                                                                     same as SAELens TopK)
  AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", §A.2):
    fired_j     : z[b,j] > 0 for some b in the batch
    since_j     : samples since latent j last fired (int counter, starts at 0)
    dead_j      = since_j >= dead_window           (evaluated BEFORE the step; default 100_000)
    k_aux       = min(aux_k, #dead)                 (aux_k = 512)
    if k_aux == 0: aux = 0
    else:
      pre_dead  = pre with non-dead latents set to -inf
      z_aux[b,j]= max(pre[b,j], 0) if j in top-k_aux of pre_dead[b,:] else 0
      e         = stopgrad(x - x_hat)                (residual of the main reconstruction)
      e_hat     = z_aux @ W_dec.T                    (no b_dec)
      aux       = mean_b sum_i (e_hat[b,i] - e[b,i])^2
  loss   = mse + aux_coef * aux                    (aux_coef = 1/32)
  after the step: since += B; since[fired] = 0    (fired from this step's z, not z_aux)
  Adam lr 4e-4.

ReLU SAE:
  z      = max(pre, 0)
  l1     = mean_b sum_j z[b,j] * ||W_dec[:, j]||_2   (norm is part of the graph: gets gradient)
  loss   = mse + lambda * l1                         (lambda default 5e-3)
  Adam lr 1e-4.

Both:
  Adam betas (0.9, 0.999), eps 1e-8, no weight decay, all four tensors trained.
  After every optimizer step: W_dec[:, j] /= max(||W_dec[:, j]||, 1e-12)  (decoder renorm, no grad).
  (No gradient projection of the decoder; renorm only.)
  Init (seeded): W_dec = N(0,1) [d,K] with unit columns; W_enc = W_dec.T (copy); b_enc = 0;
  b_dec = mean of the first training batch over samples.

Commands (repo root):
  python3 scripts/sae_reference.py bench [--d 512] [--features 4096] [--k 32] [--batch 4096]
        [--steps 20] [--warmup 3] [--threads N] [--dead-window 100000] [--l1 5e-3]
        [--kinds topk,relu] [--json OUT] [--monoscope-json FILE]
    --kinds takes any of topk, relu, batchtopk, matryoshka, jumprelu, random, aligned,
    groupsparse, split (monoscope's defaults for each kind's own settings).
    Random data: x ~ N(0, I_d), each row L2-normalised (like CLIP embeddings); a pool of 8
    batches is generated up front and cycled. Times full training steps (forward, loss,
    backward, Adam step, decoder renorm, dead-latent bookkeeping) after warm-up; prints
    samples/s. With --monoscope-json FILE ({"results":[{"kind":"topk"|"relu",
    "samples_per_s":float,...}]}) also prints monoscope/PyTorch ratios. Only ratios measured on
    the same machine at the same time are meaningful.
    Note: with --dead-window 100000 and few steps no latent can be dead, so the AuxK branch is
    not exercised (with batch 4096 and random data every latent fires every step anyway); pass
    --dead-window 0 to time it: then every latent counts as dead and k_aux = aux_k = 512 each step.
    --kinds also takes topk-sparse: the topk SAE with its decoder as a sparse product
    (torch.nn.functional.embedding_bag over each row's k kept latents, for x_hat and AuxK's
    e_hat), as monoscope's CPU trainer does (src/train/sparse.rs). PyTorch's backward of
    topk still scatters dpre into a dense [B, K] tensor, so its encoder gradient stays a
    dense GEMM. Its ratio is against monoscope's topk figure.
  python3 scripts/sae_reference.py golden --out DIR [--kind topk|relu] [--steps 3]
    Tiny deterministic run (d 8, K 32, k 4, aux_k 8, batch 16, dead_window 16) that saves
    DIR/<kind>.safetensors: init params, the batches, params after each step and the losses, for
    step-by-step parity tests of the port. (Params saved in monoscope layout above.)
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from cores import usable_cores


class JumpReLUFn(torch.autograd.Function):
    """z = pre * H(pre - theta); d/dpre = H, d/dtheta = -(theta/eps) K((pre - theta)/eps)
    (SAELens' JumpReLU with jumprelu_ste_to_input False)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        kernel = ((pre - theta).abs() < eps / 2).to(pre) / eps
        return g * (pre > theta), (-(theta * kernel) * g).sum(0), None


class StepFn(torch.autograd.Function):
    """H(pre - theta); d/dtheta = -(1/eps) K((pre - theta)/eps), nothing to pre."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        kernel = ((pre - theta).abs() < ctx.eps / 2).to(pre) / ctx.eps
        return None, (-kernel * g).sum(0), None


KINDS = ("topk", "topk-sparse", "relu", "batchtopk", "matryoshka", "jumprelu", "random", "aligned", "groupsparse")


class SAE(torch.nn.Module):
    """Every SAE kind of monoscope (src/train/losses.rs `sae_loss` cites each paper):
    topk, relu, batchtopk, matryoshka, jumprelu, random (decoder frozen), aligned and
    groupsparse (rows i and B/2+i of a batch are one pair). `split` is two topk SAEs
    (class SplitSAE)."""

    def __init__(self, d, K, kind="topk", k=32, aux_k=512, aux_coef=1.0 / 32, dead_window=100_000,
                 l1=5e-3, seed=0, l0=1e-3, bandwidth=0.05, align=4e-4, group=0.05, mask=0.2):
        super().__init__()
        assert kind in KINDS, kind
        self.d, self.K, self.kind, self.k = d, K, kind, k
        self.aux_k, self.aux_coef, self.dead_window, self.l1 = aux_k, aux_coef, dead_window, l1
        self.l0, self.bandwidth, self.align, self.group, self.mask = l0, bandwidth, align, group, mask
        self.widths = [K // 8, K // 4, K // 2, K]
        g = torch.Generator().manual_seed(seed)
        self.g = torch.Generator().manual_seed(seed + 1)
        W_dec = torch.randn(d, K, generator=g)
        W_dec /= W_dec.norm(dim=0, keepdim=True)
        self.W_dec = torch.nn.Parameter(W_dec, requires_grad=kind != "random")
        self.W_enc = torch.nn.Parameter(W_dec.T.clone().contiguous())
        self.b_enc = torch.nn.Parameter(torch.zeros(K))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))
        self.threshold = torch.nn.Parameter(torch.full((K,), 0.01), requires_grad=kind == "jumprelu")
        self.topk_threshold = 0.0
        self.register_buffer("since", torch.zeros(K, dtype=torch.int64))

    @torch.no_grad()
    def init_b_dec(self, x):
        self.b_dec.copy_(x.mean(0))

    def pre(self, x):
        return (x - self.b_dec) @ self.W_enc.T + self.b_enc

    def topk(self, pre, k):
        vals, idx = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))

    def activate(self, pre):
        if self.kind == "relu":
            return torch.relu(pre)
        if self.kind in ("batchtopk", "matryoshka"):
            acts = torch.relu(pre).flatten()
            vals, idx = acts.topk(self.k * pre.shape[0])
            z = torch.zeros_like(acts).scatter(-1, idx, vals).reshape(pre.shape)
            with torch.no_grad():
                pos = z[z > 0]
                if pos.numel():
                    self.topk_threshold = 0.99 * self.topk_threshold + 0.01 * float(pos.min())
            return z
        if self.kind == "jumprelu":
            return JumpReLUFn.apply(pre, self.threshold, self.bandwidth)
        if self.kind == "groupsparse" and self.training_mask:
            h = pre.shape[0] // 2
            m = torch.rand(h, self.K, generator=self.g) < self.mask
            pre = pre.masked_fill(torch.cat([m, m]), float("-inf"))
        return self.topk(pre, self.k)

    training_mask = True

    def encode(self, x):
        return self.activate(self.pre(x))

    def decode(self, z):
        return z @ self.W_dec.T + self.b_dec

    def decode_sparse(self, pre, k, mask=None):
        """sum_j relu(pre[b, j]) W_dec[:, j] over the k largest pre[b, j] (of those not masked)."""
        if mask is not None:
            pre = torch.where(mask[None, :], pre, torch.full_like(pre, float("-inf")))
        vals, idx = pre.topk(k, dim=-1)
        vals = torch.relu(vals)
        rows = torch.nn.functional.embedding_bag(idx, self.W_dec.t(), per_sample_weights=vals, mode="sum")
        return rows, (idx, vals)

    def loss_sparse(self, x):
        pre = self.pre(x)
        rows, z = self.decode_sparse(pre, self.k)
        x_hat = rows + self.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        dead = self.since >= self.dead_window
        n_dead = int(dead.sum())
        k_aux = min(self.aux_k, n_dead)
        aux = mse.new_zeros(())
        if k_aux:
            e_hat, _ = self.decode_sparse(pre, k_aux, dead)
            aux = (e_hat - (x - x_hat).detach()).pow(2).sum(-1).mean()
        return {"mse": mse, "z": z, "aux": aux, "n_dead": n_dead, "loss": mse + self.aux_coef * aux}

    def loss(self, x):
        if self.kind == "topk-sparse":
            return self.loss_sparse(x)
        pre = self.pre(x)
        z = self.activate(pre)
        x_hat = self.decode(z)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        out = {"mse": mse, "z": z}
        if self.kind == "relu":
            l1 = (z * self.W_dec.norm(dim=0)).sum(-1).mean()
            out["l1"] = l1
            out["loss"] = mse + self.l1 * l1
            return out
        if self.kind == "jumprelu":
            l0 = StepFn.apply(pre, self.threshold, self.bandwidth).sum(-1).mean()
            out["aux"] = l0
            out["loss"] = mse + self.l0 * l0
            return out
        dead = self.since >= self.dead_window
        n_dead = int(dead.sum())
        k_aux = min(self.aux_k, n_dead)
        if k_aux == 0:
            aux = mse.new_zeros(())
        else:
            pre_dead = torch.where(dead[None, :], pre, torch.full_like(pre, float("-inf")))
            vals, idx = pre_dead.topk(k_aux, dim=-1)
            z_aux = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
            e = (x - x_hat).detach()
            e_hat = z_aux @ self.W_dec.T
            aux = (e_hat - e).pow(2).sum(-1).mean()
        out["aux"] = aux
        out["n_dead"] = n_dead
        loss = mse + self.aux_coef * aux
        h = x.shape[0] // 2
        if self.kind == "matryoshka":
            partial, prev = self.b_dec, 0
            for w in self.widths[:-1]:
                partial = partial + z[:, prev:w] @ self.W_dec[:, prev:w].T
                prev = w
                loss = loss + (partial - x).pow(2).sum(-1).mean()
        elif self.kind == "aligned":
            zi, zt = z[:h], z[h:2 * h]
            with torch.no_grad():
                drop = (zi == zi.max(1, keepdim=True).values) | (zt == zt.max(1, keepdim=True).values)
            zi, zt = zi.masked_fill(drop, 0), zt.masked_fill(drop, 0)
            cos = (zi * zt).sum(1) / (zi.norm(dim=1).clamp_min(1e-8) * zt.norm(dim=1).clamp_min(1e-8))
            loss = loss - cos.mean() * self.align * self.d
        elif self.kind == "groupsparse":
            zi, zt = z[:h], z[h:2 * h]
            loss = loss + (zi.pow(2) + zt.pow(2) + 1e-12).sqrt().sum(1).mean() * (self.group / 2)
        out["loss"] = loss
        return out

    @torch.no_grad()
    def after_step(self, z, batch):
        if self.kind != "random":
            self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)
        if self.kind == "jumprelu":
            self.threshold.clamp_(min=0.0)
        if isinstance(z, tuple):  # topk-sparse: (indices, values) of the kept entries
            fired = torch.zeros(self.K, dtype=torch.bool, device=z[0].device)
            fired[z[0][z[1] > 0]] = True
        else:
            fired = (z > 0).any(0)
        self.since += batch
        self.since[fired] = 0


class SplitSAE(torch.nn.Module):
    """One topk SAE per modality (first and second half of a batch); loss = their mean."""

    def __init__(self, d, K, **kw):
        super().__init__()
        self.kind = "split"
        self.image = SAE(d, K, kind="topk", **kw)
        self.text = SAE(d, K, kind="topk", **{**kw, "seed": kw.get("seed", 0) + 7})

    def init_b_dec(self, x):
        h = x.shape[0] // 2
        self.image.init_b_dec(x[:h])
        self.text.init_b_dec(x[h:])

    def loss(self, x):
        h = x.shape[0] // 2
        a, b = self.image.loss(x[:h]), self.text.loss(x[h:])
        return {"loss": (a["loss"] + b["loss"]) / 2, "mse": (a["mse"] + b["mse"]) / 2, "z": (a["z"], b["z"]),
                "n_dead": a.get("n_dead", 0) + b.get("n_dead", 0)}

    def after_step(self, z, batch):
        self.image.after_step(z[0], batch // 2)
        self.text.after_step(z[1], batch // 2)


def make_opt(sae):
    # monoscope's defaults: 1e-4 for relu (and ncl), 4e-4 for every other kind.
    lr = 1e-4 if sae.kind == "relu" else 4e-4
    params = [p for p in sae.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def train_step(sae, opt, x):
    out = sae.loss(x)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    sae.after_step(out["z"], x.shape[0])
    return out


def unit_rows(n, d, g):
    x = torch.randn(n, d, generator=g)
    return x / x.norm(dim=1, keepdim=True)


def bench(a):
    threads = a.threads or usable_cores()
    torch.set_num_threads(threads)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    pool = [unit_rows(a.batch, a.d, g).to(dev) for _ in range(8)]
    results = []
    for kind in a.kinds.split(","):
        make = SplitSAE if kind == "split" else lambda *p, **kw: SAE(*p, kind=kind, **kw)
        sae = make(a.d, a.features, k=a.k, dead_window=a.dead_window, l1=a.l1).to(dev)
        sae.init_b_dec(pool[0])
        opt = make_opt(sae)
        for i in range(a.warmup):
            train_step(sae, opt, pool[i % 8])
        sync()
        times = []
        for i in range(a.steps):
            t = time.perf_counter()
            out = train_step(sae, opt, pool[i % 8])
            float(out["loss"].detach())
            sync()
            times.append(time.perf_counter() - t)
        tot = sum(times)
        r = {"kind": kind, "samples_per_s": a.batch * a.steps / tot, "ms_per_step": 1e3 * tot / a.steps,
             "ms_per_step_min": 1e3 * min(times), "final_loss": float(out["loss"].detach()),
             "final_mse": float(out["mse"].detach()), "n_dead_last": int(out.get("n_dead", 0))}
        results.append(r)
    cfg = {"d": a.d, "features": a.features, "k": a.k, "batch": a.batch, "steps": a.steps,
           "warmup": a.warmup, "threads": threads, "dead_window": a.dead_window, "l1": a.l1,
           "torch": torch.__version__, "cpu_count": usable_cores(), "device": a.device}
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {threads} threads"
    print(f"PyTorch {torch.__version__} {where}; d={a.d} K={a.features} k={a.k} "
          f"batch={a.batch} steps={a.steps} (warm-up {a.warmup}) dead_window={a.dead_window}")
    mono = {}
    if a.monoscope_json:
        with open(a.monoscope_json) as f:
            mono = {r["kind"]: r["samples_per_s"] for r in json.load(f)["results"]}
    hdr = "| kind | PyTorch samples/s | ms/step (mean) | ms/step (min) | final loss | dead (last step) |"
    if mono:
        hdr += " monoscope samples/s | monoscope/PyTorch |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in results:
        line = (f"| {r['kind']} | {r['samples_per_s']:.0f} | {r['ms_per_step']:.1f} | {r['ms_per_step_min']:.1f} "
                f"| {r['final_loss']:.4f} | {r['n_dead_last']} |")
        if mono:
            m = mono.get(r["kind"].removesuffix("-sparse"))
            line += f" {m:.0f} | {m / r['samples_per_s']:.2f} |" if m else " - | - |"
            if m:
                r["monoscope_samples_per_s"] = m
                r["ratio_monoscope_over_pytorch"] = m / r["samples_per_s"]
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": cfg, "results": results}, f, indent=2)


def golden(a):
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    d, K, B = 8, 32, 16
    g = torch.Generator().manual_seed(7)
    os.makedirs(a.out, exist_ok=True)
    for kind in a.kind.split(","):
        sae = SAE(d, K, kind=kind, k=4, aux_k=8, dead_window=16, l1=5e-3, seed=3)
        xs = [unit_rows(B, d, g) for _ in range(a.steps)]
        sae.init_b_dec(xs[0])
        opt = make_opt(sae)
        t = {}

        def snap(tag):
            for n in ("W_enc", "W_dec", "b_enc", "b_dec"):
                t[f"{tag}.{n}"] = getattr(sae, n).detach().clone().contiguous()

        snap("init")
        losses = []
        for s, x in enumerate(xs):
            t[f"x.{s}"] = x
            with torch.no_grad():
                t[f"z.{s}"] = sae.encode(x)
            out = train_step(sae, opt, x)
            losses.append([float(out["loss"].detach()), float(out["mse"].detach()), float(out.get("aux", out.get("l1")).detach())])
            snap(f"step{s + 1}")
        t["losses"] = torch.tensor(losses)  # per step: loss, mse, aux (topk) or l1 (relu)
        save_file(t, os.path.join(a.out, f"{kind}.safetensors"),
                  metadata={"kind": kind, "d": str(d), "K": str(K), "k": "4", "aux_k": "8",
                            "dead_window": "16", "l1": "5e-3", "batch": str(B)})
        print(kind, "losses", losses)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--d", type=int, default=512)
    b.add_argument("--features", type=int, default=4096)
    b.add_argument("--k", type=int, default=32)
    b.add_argument("--batch", type=int, default=4096)
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--dead-window", type=int, default=100_000)
    b.add_argument("--l1", type=float, default=5e-3)
    b.add_argument("--kinds", default="topk,relu")
    b.add_argument("--json")
    b.add_argument("--monoscope-json")
    b.add_argument("--device", default="cpu",
                   help="cpu or cuda (f32, no TF32): the reference for bench-train --backend wgpu")
    gd = sub.add_parser("golden")
    gd.add_argument("--out", required=True)
    gd.add_argument("--kind", default="topk,relu")
    gd.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    bench(a) if a.cmd == "bench" else golden(a)


if __name__ == "__main__":
    sys.exit(main())
