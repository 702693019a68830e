"""Write the small committed fixtures that monoscope's Rust tests read.

Run from the repository root, after scripts/make_tokenizer.py:

    python3 scripts/make_fixtures.py            # everything
    python3 scripts/make_fixtures.py images models tokenizer   # any subset

Outputs (all deterministic; fixed seeds, no network, torch on CPU):

* tests/fixtures/images/            test images (real photos from scikit-image,
  synthetic edge cases, two invalid files), preprocess_reference.safetensors
  (slow PIL CLIPImageProcessorPil output at shortest_edge 64 / crop 64 per valid
  image, plus the decoded RGB bytes) and preprocess.json.
* assets/tiny-clip/                 random tiny CLIP, quick_gelu, float16 weights,
  complete HF directory (config.json, model.safetensors, tokenizer.json,
  tokenizer_config.json, preprocessor_config.json) + reference files.
* tests/fixtures/tiny-gelu/         same shapes, exact erf gelu, float32 weights.
* tests/fixtures/tiny-legacy/       quick_gelu, float16, a hand-written
  transformers-4.x style config.json (text_config + text_config_dict ...),
  int64 position_ids buffers in the safetensors, eos_token_id 2 => legacy
  "argmax of input_ids" pooling.
  Each model dir gets reference.safetensors and reference.json (see
  write_reference for the exact keys).
* tests/fixtures/tokenizer_cases.json   open_clip vs HF tokenizer ids.

Reference numbers are computed in float32. For the float16 fixtures the model
is first rounded to float16 and upcast again, so the reference is "the stored
weights, computed in f32".
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import transformers
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTokenizer,
    CLIPVisionConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

TOKENIZER_JSON = os.path.join("assets", "clip-tokenizer", "tokenizer.json")
IMG_DIR = os.path.join("tests", "fixtures", "images")
SEED = 1234

# image file -> unambiguous key (used in preprocess_reference.safetensors)
VALID_IMAGES = {
    "astronaut.jpg": "astronaut",
    "coffee.jpg": "coffee",
    "gray.png": "gray",
    "rgba.png": "rgba",
    "tiny.png": "tiny",
    "wide.png": "wide",
    "anim.gif": "anim",
    "image.bmp": "image_bmp",
    "image.webp": "image_webp",
}
INVALID_IMAGES = ["not_an_image.png", "truncated.jpg"]
# images fed through the full processor + model for file_image_embeds
MODEL_IMAGE_FILES = ["astronaut.jpg", "coffee.jpg", "rgba.png", "wide.png"]

TEXTS = [
    "a photo of a cat",
    "",
    "Café naïve résumé — 東京の猫 🐱🚀!",
    "  Hello,\tWORLD!!!   it's   a...   test\n\n(odd) whitespace & punctuation ;-) ",
    " ".join(
        f"word{i} alpha beta gamma, delta" for i in range(30)
    ),  # far more than 77 tokens
]


# ----------------------------------------------------------------------------
# 3. images
# ----------------------------------------------------------------------------
def make_images():
    import skimage.data

    os.makedirs(IMG_DIR, exist_ok=True)
    rng = np.random.default_rng(SEED)

    def photo(arr, name):
        im = Image.fromarray(arr)
        w, h = im.size
        s = 160 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
        im.save(os.path.join(IMG_DIR, name), quality=90)

    photo(skimage.data.astronaut(), "astronaut.jpg")
    photo(skimage.data.coffee(), "coffee.jpg")

    # 8-bit grayscale 40x30 (w x h) gradient
    y, x = np.mgrid[0:30, 0:40]
    gray = ((x * 255 / 39) * 0.7 + (y * 255 / 29) * 0.3).round().astype(np.uint8)
    Image.fromarray(gray, mode="L").save(os.path.join(IMG_DIR, "gray.png"))

    # RGBA 48x48 with varying alpha
    y, x = np.mgrid[0:48, 0:48]
    rgba = np.stack(
        [x * 5, y * 5, (x + y) * 2 % 256, (x * 255 / 47).round()], axis=-1
    ).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(os.path.join(IMG_DIR, "rgba.png"))

    # 3x5 (w x h) RGB
    tiny = rng.integers(0, 256, size=(5, 3, 3), dtype=np.uint8)
    Image.fromarray(tiny, mode="RGB").save(os.path.join(IMG_DIR, "tiny.png"))

    # 200x12 RGB, extreme aspect ratio
    y, x = np.mgrid[0:12, 0:200]
    wide = np.stack([x * 255 / 199, y * 20, 255 - x * 255 / 199], axis=-1)
    wide = (wide + rng.normal(0, 8, wide.shape)).clip(0, 255).round().astype(np.uint8)
    Image.fromarray(wide, mode="RGB").save(os.path.join(IMG_DIR, "wide.png"))

    # 2-frame palette GIF 24x24, frames differ (decoders must take frame 0)
    y, x = np.mgrid[0:24, 0:24]
    f0 = np.stack([x * 10, y * 10, np.full_like(x, 128)], -1).astype(np.uint8)
    f1 = np.stack([255 - x * 10, np.full_like(x, 30), y * 10], -1).astype(np.uint8)
    frames = [
        Image.fromarray(f).quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        for f in (f0, f1)
    ]
    frames[0].save(
        os.path.join(IMG_DIR, "anim.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0
    )

    # BMP 20x20
    bmp = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    Image.fromarray(bmp, mode="RGB").save(os.path.join(IMG_DIR, "image.bmp"))

    # lossless WebP 30x20 (w x h)
    y, x = np.mgrid[0:20, 0:30]
    webp = np.stack([x * 8, y * 12, (x * y) % 256], -1).astype(np.uint8)
    Image.fromarray(webp, mode="RGB").save(os.path.join(IMG_DIR, "image.webp"), lossless=True)

    with open(os.path.join(IMG_DIR, "not_an_image.png"), "w") as f:
        f.write("This is a plain text file with a .png name; decoders must reject it.\n")

    data = open(os.path.join(IMG_DIR, "coffee.jpg"), "rb").read()
    open(os.path.join(IMG_DIR, "truncated.jpg"), "wb").write(data[: int(len(data) * 0.4)])

    # sanity: frames of the GIF differ, webp is lossless
    g = Image.open(os.path.join(IMG_DIR, "anim.gif"))
    a0 = np.array(g.convert("RGB"))
    g.seek(1)
    a1 = np.array(g.convert("RGB"))
    assert g.n_frames == 2 and np.abs(a0.astype(int) - a1).max() > 50
    assert (np.array(Image.open(os.path.join(IMG_DIR, "image.webp")).convert("RGB")) == webp).all()

    # preprocess reference at 64
    proc = image_processor(64)
    tensors, listing = {}, []
    for fname, key in VALID_IMAGES.items():
        im = Image.open(os.path.join(IMG_DIR, fname))
        rgb = transformers.image_transforms.convert_to_rgb(im, return_numpy=True)
        pv = proc(images=im, return_tensors="pt")["pixel_values"][0]
        tensors[key] = pv.float().contiguous()
        tensors["rgb." + key] = torch.from_numpy(np.ascontiguousarray(rgb)).to(torch.uint8)
        listing.append(
            {"file": fname, "key": key, "mode": im.mode, "width": im.size[0], "height": im.size[1]}
        )
    save_file(tensors, os.path.join(IMG_DIR, "preprocess_reference.safetensors"))
    meta = {
        "processor_class": type(proc).__name__,
        "processor_module": type(proc).__module__,
        "processor": json.loads(proc.to_json_string()),
        "images": listing,
        "invalid_images": INVALID_IMAGES,
        "keys": {
            "{key}": "float32 [3,64,64] pixel_values (slow PIL processor)",
            "rgb.{key}": "uint8 [H,W,3]: decoded image after transformers convert_to_rgb "
            "(alpha composited onto white; frame 0 for GIF)",
        },
        "notes": "Pipeline: PIL decode -> convert_to_rgb (alpha over white) -> resize shortest edge "
        "to 64 with PIL BICUBIC (other edge int(64*long/short), truncated) -> center crop 64 -> "
        "/255 -> (x-mean)/std. JPEG decoding by libjpeg (PIL); other decoders may differ by a few levels.",
        "transformers_version": transformers.__version__,
        "pillow_version": Image.__version__ if hasattr(Image, "__version__") else None,
    }
    json.dump(meta, open(os.path.join(IMG_DIR, "preprocess.json"), "w"), indent=2, ensure_ascii=False)
    print("images written:", sorted(os.listdir(IMG_DIR)))


def image_processor(size):
    """The slow (PIL + numpy) CLIP image processor, default CLIP mean/std, bicubic."""
    return CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
    )


# ----------------------------------------------------------------------------
# 2. tiny models
# ----------------------------------------------------------------------------
def hf_tokenizer():
    return CLIPTokenizer(tokenizer_file=TOKENIZER_JSON, model_max_length=77)


def tiny_config(hidden_act, eos_token_id=49407, bos_token_id=49406):
    text = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        projection_dim=16,
        eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
        pad_token_id=1,
    )
    vision = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_channels=3,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        projection_dim=16,
    )
    cfg = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16, logit_scale_init_value=2.6592
    )
    return cfg


def random_model(cfg, seed, logit_scale):
    """Random init with non-trivial LayerNorms (weight 1+0.2*randn, bias 0.1*randn); other weights
    std 0.1 (text) / 0.25 (vision) / 0.05 (patch conv), biases 0.05; logit_scale fixed."""
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(logit_scale)
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif "patch_embedding" in name:
                p.copy_(0.05 * torch.randn_like(p))
            elif name.startswith(("vision_model.", "visual_projection")):
                # larger than usual so that attention is not uniform and the CLS output
                # of different random images differs clearly (cosine well below 0.99)
                p.copy_(0.25 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model


def round_f16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def check_distinct(emb, what):
    c = emb @ emb.T
    off = c[~torch.eye(len(c), dtype=torch.bool)]
    assert off.max() < 0.99, f"{what}: embeddings too similar, max pairwise cosine {off.max():.4f}"
    return float(off.max())


def text_forward(model, ids, mask):
    out = model.text_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    pooled = out.pooler_output
    emb = model.text_projection(pooled)
    return out, pooled, emb / emb.norm(dim=-1, keepdim=True)


@torch.inference_mode()
def write_reference(model, out_dir, pooling, tok, compute_note):
    """reference.safetensors keys: pixel_values, image_embeds, vision_hidden_states.{0,1,2},
    vision_pooled, input_ids, attention_mask, text_embeds, text_hidden_states.{0,1,2},
    text_pooled, logit_scale, file_image_embeds, file_pixel_values, probe_input_ids,
    probe_text_pooled, probe_text_embeds."""
    g = torch.Generator().manual_seed(SEED + 7)
    pv = torch.randn(4, 3, 32, 32, generator=g)
    vout = model.vision_model(pixel_values=pv, output_hidden_states=True)
    assert len(vout.hidden_states) == 3
    # hidden_states[0] is the encoder input = pre_layrnorm(embeddings)
    emb0 = model.vision_model.pre_layrnorm(model.vision_model.embeddings(pv))
    assert torch.allclose(vout.hidden_states[0], emb0, atol=1e-6)
    img = model.visual_projection(vout.pooler_output)
    img = img / img.norm(dim=-1, keepdim=True)

    enc = tok(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"].long(), enc["attention_mask"].long()
    tout, tpooled, temb = text_forward(model, ids, mask)
    assert len(tout.hidden_states) == 3

    # cross-check with the full model forward (as CLIPProcessor + CLIPModel would)
    full = model(input_ids=ids, attention_mask=mask, pixel_values=pv)
    assert torch.allclose(full.text_embeds, temb, atol=1e-6)
    assert torch.allclose(full.image_embeds, img, atol=1e-6)

    # probe: rows where "argmax of ids" and "first eos" pooling differ.
    probe = torch.zeros(2, 77, dtype=torch.long)
    probe[0, :5] = torch.tensor([320, 1125, 2368, 539, 320])  # no BOS/EOS: argmax -> pos 2, first-eos -> pos 0
    probe[1, :7] = torch.tensor([49406, 320, 1125, 49407, 2368, 49407, 320])  # both rules -> pos 3
    pout = model.text_model(input_ids=probe)
    pemb = model.text_projection(pout.pooler_output)
    pemb = pemb / pemb.norm(dim=-1, keepdim=True)
    eos = model.text_model.eos_token_id
    ref_pos = probe.argmax(-1) if eos == 2 else (probe == eos).int().argmax(-1)
    assert torch.equal(pout.pooler_output, pout.last_hidden_state[torch.arange(2), ref_pos])
    assert (pooling == "argmax") == (eos == 2)

    # real image files through the slow processor
    proc = image_processor(32)
    ims = [Image.open(os.path.join(IMG_DIR, f)) for f in MODEL_IMAGE_FILES]
    fpv = proc(images=ims, return_tensors="pt")["pixel_values"].float()
    femb = model.get_image_features(pixel_values=fpv).pooler_output
    femb = femb / femb.norm(dim=-1, keepdim=True)

    cos_img = check_distinct(img, "image_embeds")
    cos_txt = check_distinct(temb, "text_embeds")
    cos_file = check_distinct(femb, "file_image_embeds")

    t = {
        "pixel_values": pv,
        "image_embeds": img,
        "vision_pooled": vout.pooler_output,
        "input_ids": ids,
        "attention_mask": mask,
        "text_embeds": temb,
        "text_pooled": tpooled,
        "logit_scale": model.logit_scale.detach().reshape(()),
        "file_image_embeds": femb,
        "file_pixel_values": fpv,
        "probe_input_ids": probe,
        "probe_text_pooled": pout.pooler_output,
        "probe_text_embeds": pemb,
    }
    for i in range(3):
        t[f"vision_hidden_states.{i}"] = vout.hidden_states[i]
        t[f"text_hidden_states.{i}"] = tout.hidden_states[i]
    t = {k: v.detach().contiguous().clone() for k, v in t.items()}
    for k, v in t.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
    save_file(t, os.path.join(out_dir, "reference.safetensors"))
    meta = {
        "texts": TEXTS,
        "image_files": [os.path.join(IMG_DIR, f) for f in MODEL_IMAGE_FILES],
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "pooling": pooling,
        "text_eos_token_id": eos,
        "pad_id_used": tok.pad_token_id,
        "image_processor_class": f"{type(proc).__module__}.{type(proc).__name__} (slow, PIL)",
        "compute": compute_note,
        "logit_scale_note": "logit_scale is the stored parameter (log of the scale); scale = exp(logit_scale)",
        "vision_hidden_states_note": "index 0 = encoder input (embeddings after pre_layrnorm); i = after block i; "
        "vision_pooled = post_layernorm(CLS of last block)",
        "text_hidden_states_note": "index 0 = token+position embeddings; i = after block i (before final_layer_norm); "
        "computed with attention_mask (padding keys masked, causal)",
        "probe_note": "probe_input_ids fed WITHOUT attention_mask; row 0 has no BOS/EOS so argmax pooling "
        "(pos 2) and first-eos pooling (pos 0) differ; row 1 has two EOS (pos 3 and 5).",
        "max_pairwise_cosine": {"image_embeds": cos_img, "text_embeds": cos_txt, "file_image_embeds": cos_file},
    }
    json.dump(meta, open(os.path.join(out_dir, "reference.json"), "w"), indent=2, ensure_ascii=False)
    proc.save_pretrained(out_dir)


def save_tokenizer_files(out_dir, symlink):
    dst = os.path.join(out_dir, "tokenizer.json")
    if os.path.lexists(dst):
        os.remove(dst)
    if symlink:
        os.symlink(os.path.join("..", "..", "..", TOKENIZER_JSON), dst)
        assert os.path.samefile(dst, TOKENIZER_JSON)
    else:
        shutil.copyfile(TOKENIZER_JSON, dst)
    with tempfile.TemporaryDirectory() as d:
        hf_tokenizer().save_pretrained(d)
        shutil.copyfile(os.path.join(d, "tokenizer_config.json"), os.path.join(out_dir, "tokenizer_config.json"))


def clean_dir(d):
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)


def make_tiny_clip(tok):
    out = os.path.join("assets", "tiny-clip")
    clean_dir(out)
    model = random_model(tiny_config("quick_gelu"), seed=SEED + 1, logit_scale=3.2)
    round_f16(model)
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    model.float()
    save_tokenizer_files(out, symlink=False)
    write_reference(model, out, "eos_token_id", tok, "float32 forward of the float16-rounded weights")
    verify_roundtrip(out, model)


def make_tiny_gelu(tok):
    out = os.path.join("tests", "fixtures", "tiny-gelu")
    clean_dir(out)
    model = random_model(tiny_config("gelu"), seed=SEED + 2, logit_scale=2.9)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer_files(out, symlink=True)
    write_reference(model, out, "eos_token_id", tok, "float32 weights, float32 forward")
    verify_roundtrip(out, model)


def legacy_config_json():
    """transformers-4.x / 2021 OpenAI hub layout (cf. openai/clip-vit-large-patch14 config.json):
    `text_config`/`vision_config` carry the library DEFAULTS of the time (hidden 512 etc., eos 2, bos 0,
    pad 1) together with many generation fields; `text_config_dict`/`vision_config_dict` carry the real
    sizes and override them."""
    gen_defaults = {
        "_name_or_path": "",
        "add_cross_attention": False,
        "architectures": None,
        "bad_words_ids": None,
        "chunk_size_feed_forward": 0,
        "cross_attention_hidden_size": None,
        "decoder_start_token_id": None,
        "diversity_penalty": 0.0,
        "do_sample": False,
        "early_stopping": False,
        "encoder_no_repeat_ngram_size": 0,
        "finetuning_task": None,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
        "is_decoder": False,
        "is_encoder_decoder": False,
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "length_penalty": 1.0,
        "max_length": 20,
        "min_length": 0,
        "no_repeat_ngram_size": 0,
        "num_beam_groups": 1,
        "num_beams": 1,
        "num_return_sequences": 1,
        "output_attentions": False,
        "output_hidden_states": False,
        "output_scores": False,
        "prefix": None,
        "problem_type": None,
        "pruned_heads": {},
        "remove_invalid_values": False,
        "repetition_penalty": 1.0,
        "return_dict": True,
        "return_dict_in_generate": False,
        "sep_token_id": None,
        "task_specific_params": None,
        "temperature": 1.0,
        "tie_encoder_decoder": False,
        "tie_word_embeddings": True,
        "tokenizer_class": None,
        "top_k": 50,
        "top_p": 1.0,
        "torch_dtype": None,
        "torchscript": False,
        "transformers_version": "4.16.0.dev0",
        "use_bfloat16": False,
    }
    text_config = dict(gen_defaults)
    text_config.update(
        {
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "dropout": 0.0,
            "eos_token_id": 2,
            "hidden_act": "quick_gelu",
            "hidden_size": 512,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 2048,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
            "pad_token_id": 1,
            "projection_dim": 768,
            "vocab_size": 49408,
        }
    )
    vision_config = dict(gen_defaults)
    vision_config.update(
        {
            "attention_dropout": 0.0,
            "bos_token_id": None,
            "dropout": 0.0,
            "eos_token_id": None,
            "hidden_act": "quick_gelu",
            "hidden_size": 768,
            "image_size": 224,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 3072,
            "layer_norm_eps": 1e-05,
            "model_type": "clip_vision_model",
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "pad_token_id": None,
            "patch_size": 32,
            "projection_dim": 768,
        }
    )
    text_config = dict(sorted(text_config.items()))
    vision_config = dict(sorted(vision_config.items()))
    return {
        "_name_or_path": "monoscope/tiny-legacy",
        "architectures": ["CLIPModel"],
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "model_type": "clip",
        "projection_dim": 16,
        "text_config": text_config,
        "text_config_dict": {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "projection_dim": 16,
        },
        "torch_dtype": "float16",
        "transformers_version": None,
        "vision_config": vision_config,
        "vision_config_dict": {
            "hidden_size": 32,
            "image_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "patch_size": 8,
            "projection_dim": 16,
        },
    }


def make_tiny_legacy(tok):
    out = os.path.join("tests", "fixtures", "tiny-legacy")
    clean_dir(out)
    # legacy ids: eos 2, bos 0 (as in the 2021 config); eos==2 => transformers pools at argmax(input_ids)
    cfg = tiny_config("quick_gelu", eos_token_id=2, bos_token_id=0)
    model = random_model(cfg, seed=SEED + 3, logit_scale=3.5)
    assert model.text_model.eos_token_id == 2
    round_f16(model)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    sd["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None].contiguous()
    sd["vision_model.embeddings.position_ids"] = torch.arange(17, dtype=torch.int64)[None].contiguous()
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(legacy_config_json(), f, indent=2)
        f.write("\n")
    save_tokenizer_files(out, symlink=True)
    write_reference(model, out, "argmax", tok, "float32 forward of the float16-rounded weights")

    # What does transformers 5 itself make of the hand-written config?
    loaded = CLIPConfig.from_pretrained(out)
    tc, vc = loaded.text_config, loaded.vision_config
    assert (tc.hidden_size, tc.intermediate_size, tc.num_hidden_layers, tc.num_attention_heads) == (16, 32, 2, 2)
    assert (vc.hidden_size, vc.image_size, vc.patch_size, vc.num_hidden_layers) == (32, 32, 8, 2)
    meta = json.load(open(os.path.join(out, "reference.json")))
    meta["transformers5_loaded_text_eos_token_id"] = tc.eos_token_id
    meta["legacy_note"] = (
        "Reference computed with text eos_token_id=2 (legacy argmax(input_ids) pooling). "
        f"Note: transformers {transformers.__version__} loading this config.json resolves eos_token_id="
        f"{tc.eos_token_id} because text_config_dict is expanded with current defaults and overrides "
        "text_config. For tokenizer output (EOS 49407 = the largest id) both rules pick the same position; "
        "only probe row 0 tells them apart."
    )
    json.dump(meta, open(os.path.join(out, "reference.json"), "w"), indent=2, ensure_ascii=False)
    m2 = CLIPModel.from_pretrained(out, dtype=torch.float32).eval()
    m2.text_model.eos_token_id = 2
    m2.config.text_config.eos_token_id = 2
    check_same(m2, model)
    print(f"tiny-legacy: transformers-loaded eos_token_id = {tc.eos_token_id}")


def check_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    for k in sb:
        assert torch.equal(sa[k].float(), sb[k].float()), k


def verify_roundtrip(out, model):
    m2 = CLIPModel.from_pretrained(out, dtype=torch.float32).eval()
    check_same(m2, model)
    assert m2.config.text_config.eos_token_id == model.config.text_config.eos_token_id


def make_models():
    tok = hf_tokenizer()
    make_tiny_clip(tok)
    make_tiny_gelu(tok)
    make_tiny_legacy(tok)
    for d in ["assets/tiny-clip", "tests/fixtures/tiny-gelu", "tests/fixtures/tiny-legacy"]:
        print(d, {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))})


# ----------------------------------------------------------------------------
# 4. tokenizer cases
# ----------------------------------------------------------------------------
TOKENIZER_CASES = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "A Photo Of A Cat.",
    "",
    " ",
    "   leading and trailing spaces   ",
    "multiple     spaces    between",
    "tabs\tand\ttabs",
    "new\nlines\r\nand\rcarriage",
    "mixed \t\n whitespace \u00a0 nbsp",
    "don't",
    "Don't you think it's great? I'm sure they'll say we'd've",
    "DON'T SHOUT, IT'S RUDE",
    "rock'n'roll",
    "the dog's ball",
    "hello, world!",
    "wow!!!???...",
    "(parentheses) [brackets] {braces} <angles>",
    "email: someone@example.com",
    "https://www.example.com/path?query=1&x=2#frag",
    "price: $19.99 or €20,00",
    "1234567890",
    "3.14159 is pi; 2+2=4",
    "year 2024, 1st, 2nd, 3rd, 100th",
    "café",
    "naïve résumé",
    "Ångström über straße",
    "e\u0301 (decomposed e-acute)",
    "Ελληνικά γράμματα",
    "Русский текст",
    "東京の猫",
    "中文字符测试",
    "한국어 텍스트",
    "عربى",
    "हिन्दी",
    "emoji 🐱🚀",
    "👨‍👩‍👧‍👦 family",
    "flags 🇫🇷🇯🇵",
    "smiley :-) ;-) <3",
    "&amp;",
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&quot;quoted&quot; and &#39;single&#39;",
    "&amp;amp; double escaped",
    "Tom &amp Jerry",
    "<|startoftext|>",
    "<|endoftext|>",
    "a <|endoftext|> in the middle",
    "snake_case_identifier and camelCaseWord",
    "hyphen-ated words--and dashes — em – en",
    "“smart quotes” and ‘single’ ones",
    "ellipsis… and bullet •",
    "mojibake: cafÃ©",
    "zero\u200bwidth space",
    "control\x07char",
    "½ ¼ ² ³ ™ ©",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "ligature ﬁ ﬂ",
    "a" * 100,
    "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism",
    "#hashtag @mention",
    "x" + " y" * 200,
    " ".join(["the quick brown fox jumps over the lazy dog"] * 12),
    "a photo of a {}.",
    "itap of a dog",
    "a bad photo of the bird",
]


def make_tokenizer_cases():
    import open_clip

    oc = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    tok = hf_tokenizer()
    cases, ndiff = [], 0
    for s in TOKENIZER_CASES:
        t = open_clip.tokenize([s], context_length=77)[0].tolist()
        # strip trailing zero padding (0 is also the id of "!", which never appears after EOS)
        while t and t[-1] == 0:
            t.pop()
        assert t == oc([s])[0].tolist()[: len(t)]
        h = tok(s, truncation=True, max_length=77)["input_ids"]
        d = t != h
        entry = {"text": s, "open_clip_ids": t, "hf_ids": h, "differs": d}
        if d:
            ndiff += 1
            clean = oc.clean_fn(s)  # ftfy.fix_text + html.unescape x2 + whitespace collapse + lower
            entry["open_clip_clean"] = clean
            # does HF on open_clip's cleaned text reproduce open_clip? (=> cleaning is the only difference)
            entry["hf_on_clean_matches"] = tok(clean, truncation=True, max_length=77)["input_ids"] == t
            print(f"DIFFERS: {s!r} (hf on open_clip-cleaned text matches: {entry['hf_on_clean_matches']})\n   open_clip: {t[:20]}{'...' if len(t) > 20 else ''}\n   hf:        {h[:20]}{'...' if len(h) > 20 else ''}")
        cases.append(entry)
    assert len(cases) >= 60
    assert any(len(c["hf_ids"]) == 77 for c in cases)
    out = {
        "tokenizer_json": TOKENIZER_JSON,
        "open_clip_version": open_clip.__version__,
        "transformers_version": transformers.__version__,
        "notes": "open_clip_ids: open_clip.tokenize(context_length=77), trailing zero padding stripped "
        "(open_clip cleans text with ftfy.fix_text + html.unescape twice + whitespace collapse + lower, "
        "truncates to 77 keeping EOS last). hf_ids: transformers CLIPTokenizer from tokenizer.json, "
        "truncation=True, max_length=77, no padding (HF pads with 49407, open_clip with 0). "
        "differs marks cases where the two id lists differ.",
        "num_cases": len(cases),
        "num_differ": ndiff,
        "cases": cases,
    }
    path = os.path.join("tests", "fixtures", "tokenizer_cases.json")
    json.dump(out, open(path, "w"), indent=1, ensure_ascii=False)
    print(f"tokenizer cases: {len(cases)}, differ: {ndiff}, wrote {path}")


def main(argv):
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(1)
    assert os.path.exists(TOKENIZER_JSON), "run scripts/make_tokenizer.py first"
    what = argv[1:] or ["images", "models", "tokenizer"]
    if "images" in what:
        make_images()
    if "models" in what:
        make_models()
    if "tokenizer" in what:
        make_tokenizer_cases()


if __name__ == "__main__":
    main(sys.argv)
