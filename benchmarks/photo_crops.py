"""Real images for the image benchmarks, offline: random crops of the photographs inside scikit-image's
wheel (the wheel is a zip; nothing is installed and nothing is imported from it).

    pip download scikit-image==0.26.0 --no-deps -d downloads/     # once, where PyPI is reachable
    python benchmarks/photo_crops.py downloads/scikit_image-0.26.0-*.whl runs/photos --n 5000
    mmgan run --plugin image --data runs/photos                    # train on them, like any folder

Each crop takes one of the colour photographs, a square side drawn log-uniformly between ``--min-side``
and ``--max-side`` pixels at a random place, and resizes it to ``--size`` with Lanczos; the set is a
deterministic function of ``--seed``. scikit-learn's digits are not used: they are kept aside as an
independent check.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import zipfile
from pathlib import Path

from PIL import Image

# the colour photographs (scenes, an animal, objects, microscopy, sky); test patterns and gradients left out
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
          "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")


def read_photos(wheel: Path) -> dict[str, Image.Image]:
    with zipfile.ZipFile(wheel) as archive:
        names = {Path(n).name: n for n in archive.namelist() if n.startswith("skimage/data/")}
        missing = [p for p in PHOTOS if p not in names]
        if missing:
            raise SystemExit(f"{wheel}: no {', '.join(missing)} inside; is it a scikit-image wheel?")
        return {p: Image.open(io.BytesIO(archive.read(names[p]))).convert("RGB") for p in PHOTOS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--min-side", type=int, default=48)
    parser.add_argument("--max-side", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    photos = read_photos(args.wheel)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        name = rng.choice(PHOTOS)
        photo = photos[name]
        side = math.exp(rng.uniform(math.log(args.min_side), math.log(min(args.max_side, *photo.size))))
        side = int(side)
        left, top = rng.randrange(photo.width - side + 1), rng.randrange(photo.height - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((args.size, args.size), Image.LANCZOS)
        crop.save(args.out / f"{i:05d}_{Path(name).stem}.png")
    print(f"wrote {args.n} crops of {len(PHOTOS)} photographs to {args.out}")


if __name__ == "__main__":
    main()
