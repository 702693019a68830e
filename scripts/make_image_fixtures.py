"""Small images in the layouts real photos come in, as seeds for the image fuzz target
(tests/fuzz.rs) and for tests/inputs.rs: 16-bit PNG, CMYK JPEG, a JPEG with an EXIF
orientation tag, a progressive JPEG, a palette PNG with transparency, an interlaced PNG.

    python scripts/make_image_fixtures.py   # needs pillow (scripts/requirements.txt)

Writes tests/fixtures/images/layouts/* (each a few hundred bytes) and expected.json: the
RGB pixels transformers' CLIPProcessor starts from (PIL decode, first frame, then
convert_to_rgb: alpha composited over white), as hex, row-major.
"""

import json
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images", "layouts")
W, H = 40, 24  # not square, so a rotation would show in the size


def gradient():
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 // (W - 1), y * 255 // (H - 1), (x + y) * 255 // (W + H - 2)], -1)
    return rgb.astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = Image.fromarray(gradient(), "RGB")
    # 16 bit per channel, grey (PIL writes I;16 as a 16-bit grey PNG).
    g16 = (gradient()[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(g16).save(os.path.join(OUT, "gray16.png"))
    rgb.convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    rgb.save(os.path.join(OUT, "exif-rotate90.jpg"), quality=90, exif=exif.tobytes())
    rgb.save(os.path.join(OUT, "progressive.jpg"), quality=90, progressive=True)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(os.path.join(OUT, "palette-transparent.png"), transparency=0)
    rgb.save(os.path.join(OUT, "interlaced.png"), interlace=1)
    rgb.save(os.path.join(OUT, "lossless.webp"), lossless=True)
    frames = [Image.fromarray(np.roll(gradient(), s, axis=1), "RGB") for s in (0, 10, 20)]
    frames[0].save(os.path.join(OUT, "anim.webp"), save_all=True, append_images=frames[1:], duration=50)


def convert_to_rgb(im):
    """transformers.image_transforms.convert_to_rgb."""
    if im.mode == "RGB":
        return im
    im = im.convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255))
    return Image.alpha_composite(white, im).convert("RGB")


def expected():
    out = {}
    for name in sorted(os.listdir(OUT)):
        if name == "expected.json":
            continue
        im = Image.open(os.path.join(OUT, name))
        im.seek(0)
        rgb = convert_to_rgb(im)
        out[name] = {"mode": im.mode, "size": list(rgb.size), "rgb": rgb.tobytes().hex()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
    expected()
