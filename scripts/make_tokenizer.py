"""Build assets/clip-tokenizer/tokenizer.json: the OpenAI CLIP BPE tokenizer
in Hugging Face `tokenizers` JSON form.

Source of truth: the BPE merges file `bpe_simple_vocab_16e6.txt.gz` shipped in
the installed `open_clip` package. Vocabulary and merges are built exactly as
open_clip's SimpleTokenizer builds them (256 byte-level unicode chars, the same
with '</w>', merges lines [1 : 49152-256-2+1], then the two special tokens),
except that the special tokens use the HF spellings '<|startoftext|>' (49406)
and '<|endoftext|>' (49407). The result is saved with transformers'
CLIPTokenizer(vocab=..., merges=...) and only tokenizer.json is kept.

Deterministic; no network. Run from the repo root:
    python3 scripts/make_tokenizer.py
"""
import gzip
import json
import os
import shutil
import sys
import tempfile

import open_clip.tokenizer as oct
from tokenizers import Tokenizer
from transformers import CLIPTokenizer

OUT = os.path.join("assets", "clip-tokenizer", "tokenizer.json")
BOS, EOS = 49406, 49407


def build_vocab_merges():
    path = oct.default_bpe()
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(oct.bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    enc = {t: i for i, t in enumerate(vocab)}
    assert len(enc) == len(vocab) == 49408, len(enc)
    return enc, merges


def main():
    vocab, merges = build_vocab_merges()
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    assert len(tok) == 49408, f"vocab size {len(tok)} != 49408"
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        shutil.copyfile(os.path.join(d, "tokenizer.json"), OUT)

    t = Tokenizer.from_file(OUT)
    assert t.get_vocab_size() == 49408, t.get_vocab_size()
    ids = t.encode("a photo of a cat").ids
    assert ids[0] == BOS and ids[-1] == EOS, ids
    # Same ids as open_clip on a simple string.
    oc = oct.SimpleTokenizer()
    assert ids == [BOS] + oc.encode("a photo of a cat") + [EOS], (ids,)
    j = json.load(open(OUT))
    print("normalizer:", json.dumps(j["normalizer"]))
    print("pre_tokenizer:", json.dumps(j["pre_tokenizer"]))
    print("post_processor:", json.dumps(j["post_processor"])[:300])
    print("model type:", j["model"]["type"], "merges:", len(j["model"]["merges"]))
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, ids('a photo of a cat')={ids}")


if __name__ == "__main__":
    sys.exit(main())
