"""Tiny SAELens-format SAE fixtures for monoscope's SAELens loader.

Writes (repo root):
  tests/fixtures/saelens-relu/         architecture "standard" (ReLU)
  tests/fixtures/saelens-topk/         architecture "topk", k = 4
  tests/fixtures/saelens-jumprelu/     architecture "jumprelu" (also how SAELens saves
                                       BatchTopK and Matryoshka SAEs for inference)
  tests/fixtures/saelens-topk-legacy/  same weights as saelens-topk, but a pre-6.0
                                       SAELens cfg.json (activation_fn_str "topk",
                                       activation_fn_kwargs {"k": 4}, flat metadata)
each with
  cfg.json                  written by sae_lens itself (SAE.save_model) except the legacy one
  sae_weights.safetensors   W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], f32
  reference.safetensors     x [8, d_in], feature_acts [8, d_sae], x_hat [8, d_in], f32

d_in = 16, d_sae = 64. Reference outputs come from sae_lens itself: the directory is
re-loaded with SAE.load_from_disk and run through sae.encode / sae.decode; they are
also checked against a plain numpy transcription of the formulas below.

SAELens forward (sae_lens 6.54.12, saes/sae.py process_sae_in; standard_sae.py; topk_sae.py):
  sae_in      = x - b_dec * apply_b_dec_to_input            (normalize_activations = "none")
  hidden_pre  = sae_in @ W_enc + b_enc
  standard:   feature_acts = relu(hidden_pre)
  topk:       keep the k largest hidden_pre per row (torch.topk), ReLU the kept values,
              zero the rest  (TopK.forward)
              [if cfg.rescale_acts_by_decoder_norm: hidden_pre *= ||W_dec[j,:]|| before TopK,
               and decode uses feature_acts / ||W_dec[j,:]||; it is false here]
  jumprelu:   feature_acts = relu(hidden_pre) * (hidden_pre > threshold)  (JumpReLUSAE.encode)
  x_hat       = feature_acts @ W_dec + b_dec

Fixture weights are chosen so every branch matters: b_dec != 0, decoder rows are NOT
unit norm, b_enc is mostly negative and row 7 of x equals b_dec, so for that row all
pre-activations are negative (TopK keeps 4 negative values and ReLU zeroes them; the
row reconstructs to exactly b_dec). Rows 0-6 are random.

Usage: python3 scripts/make_saelens_fixture.py
"""
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from safetensors.numpy import save_file as np_save
from safetensors.torch import load_file

import sae_lens
from sae_lens import SAE
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures")
D_IN, D_SAE, K, N = 16, 64, 4, 8
SEED = 1234


def weights(rng):
    W_dec = rng.standard_normal((D_SAE, D_IN)).astype(np.float32)
    W_dec *= rng.uniform(0.5, 1.5, (D_SAE, 1)).astype(np.float32) / np.linalg.norm(W_dec, axis=1, keepdims=True)
    W_enc = (W_dec.T * 0.9 + 0.1 * rng.standard_normal((D_IN, D_SAE))).astype(np.float32)
    b_enc = (-0.3 + 0.1 * rng.standard_normal(D_SAE)).astype(np.float32)
    b_dec = (0.2 * rng.standard_normal(D_IN)).astype(np.float32)
    return dict(W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, b_dec=b_dec)


def inputs(rng, b_dec):
    x = rng.standard_normal((N, D_IN)).astype(np.float32)
    x[N - 1] = b_dec  # sae_in == 0 -> hidden_pre == b_enc < 0 everywhere
    return x


def numpy_forward(w, x, topk):
    sae_in = x - w["b_dec"]
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if "threshold" in w:
        acts = np.maximum(pre, 0) * (pre > w["threshold"])
    elif topk:
        acts = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1, kind="stable")[:, :K]
        np.put_along_axis(acts, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
    else:
        acts = np.maximum(pre, 0)
    return acts, acts @ w["W_dec"] + w["b_dec"]


def build(name, topk, w, x, meta):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    if "threshold" in w:
        cfg = JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta)
        sae = JumpReLUSAE(cfg)
    elif topk:
        cfg = TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=False, metadata=meta)
        sae = TopKSAE(cfg)
    else:
        cfg = StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta)
        sae = StandardSAE(cfg)
    with torch.no_grad():
        for k, v in w.items():
            getattr(sae, k).copy_(torch.from_numpy(v))
    sae.save_model(d)
    return reference(d, x, topk, w)


def reference(d, x, topk, w):
    loaded = SAE.load_from_disk(d)
    sd = load_file(os.path.join(d, "sae_weights.safetensors"))
    want = ["W_dec", "W_enc", "b_dec", "b_enc"] + (["threshold"] if "threshold" in w else [])
    assert sorted(sd) == want, sorted(sd)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        acts = loaded.encode(xt)
        x_hat = loaded.decode(acts)
        assert torch.allclose(loaded(xt), x_hat)
    acts, x_hat = acts.numpy(), x_hat.numpy()
    na, nx = numpy_forward(w, x, topk)
    assert np.allclose(acts, na, atol=1e-5) and np.allclose(x_hat, nx, atol=1e-5)
    if topk:
        assert ((acts > 0).sum(1) <= K).all() and (acts[N - 1] == 0).all()
        assert np.allclose(x_hat[N - 1], w["b_dec"])
    np_save({"x": x, "feature_acts": acts, "x_hat": x_hat}, os.path.join(d, "reference.safetensors"))
    print(f"{d}: {type(loaded).__name__}, L0 per row {(acts > 0).sum(1).tolist()}")
    return acts, x_hat


def legacy_cfg():
    """A pre-6.0 SAELens cfg.json (the flat format of most SAEs on the HF hub)."""
    return {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": K},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "context_size": 77,
        "model_name": "monoscope-fixture",
        "hook_name": "image_embeds",
        "hook_layer": 0,
        "hook_head_index": None,
        "prepend_bos": False,
        "dataset_path": "",
        "dataset_trust_remote_code": False,
        "normalize_activations": "none",
        "dtype": "float32",
        "device": "cpu",
        "sae_lens_training_version": "5.9.1",
        "neuronpedia_id": None,
    }


def main():
    rng = np.random.default_rng(SEED)
    meta = SAEMetadata(model_name="monoscope-fixture", hook_name="image_embeds")
    w_relu = weights(rng)
    x_relu = inputs(rng, w_relu["b_dec"])
    build("saelens-relu", False, w_relu, x_relu, meta)
    w_topk = weights(rng)
    x_topk = inputs(rng, w_topk["b_dec"])
    a, xh = build("saelens-topk", True, w_topk, x_topk, SAEMetadata(model_name="monoscope-fixture", hook_name="image_embeds"))

    d = os.path.join(OUT, "saelens-topk-legacy")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    shutil.copy(os.path.join(OUT, "saelens-topk", "sae_weights.safetensors"), d)
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(legacy_cfg(), f, indent=2)
    a2, xh2 = reference(d, x_topk, True, w_topk)
    assert np.array_equal(a, a2) and np.array_equal(xh, xh2)
    # JumpReLU: thresholds spread over the positive pre-activations, so some positive
    # values are gated off (ReLU alone would keep them) and some pass.
    w_jump = weights(rng)
    w_jump["b_enc"] = (0.1 * rng.standard_normal(D_SAE)).astype(np.float32)
    w_jump["threshold"] = rng.uniform(0.0, 0.8, D_SAE).astype(np.float32)
    x_jump = inputs(rng, w_jump["b_dec"])
    acts, _ = build("saelens-jumprelu", False, w_jump, x_jump, SAEMetadata(model_name="monoscope-fixture", hook_name="image_embeds"))
    pre = (x_jump - w_jump["b_dec"]) @ w_jump["W_enc"] + w_jump["b_enc"]
    gated = ((pre > 0) & (pre <= w_jump["threshold"])).sum()
    assert gated > 0 and (acts > 0).sum() > 0, gated
    print("sae_lens", sae_lens.__version__)


if __name__ == "__main__":
    main()
