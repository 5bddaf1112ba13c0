"""A CelebA-shaped folder of synthetic face-like images, for tests (the real data cannot be downloaded)."""
from pathlib import Path

import numpy as np
from conceptspace.config import CELEBA_ATTRIBUTES
from PIL import Image, ImageDraw


def make(root: Path, per_combo: int = 12, seed: int = 0) -> Path:
    """`root/img_align_celeba/*.jpg` (178×218) and `root/list_attr_celeba.txt`: every Male × Smiling
    combination `per_combo` times; men have a dark jaw, smiles are an upward arc."""
    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    male, smiling = CELEBA_ATTRIBUTES.index("Male"), CELEBA_ATTRIBUTES.index("Smiling")
    rows = []
    for i in range(4 * per_combo):
        m, s = (i // per_combo) // 2, (i // per_combo) % 2
        bg = tuple(int(v) for v in rng.integers(120, 230, 3))
        img = Image.new("RGB", (178, 218), bg)
        draw = ImageDraw.Draw(img)
        skin = tuple(int(v) for v in rng.integers(170, 230, 3))
        draw.ellipse((39, 40, 139, 180), fill=skin)
        if m:
            draw.chord((45, 120, 133, 185), 0, 180, fill=(60, 45, 40))
        draw.ellipse((64, 85, 78, 97), fill=(30, 30, 30))
        draw.ellipse((100, 85, 114, 97), fill=(30, 30, 30))
        if s:
            draw.arc((64, 115, 114, 150), 20, 160, fill=(150, 20, 30), width=6)
        else:
            draw.line((70, 135, 108, 135), fill=(150, 20, 30), width=5)
        name = f"{i + 1:06d}.jpg"
        img.save(root / "img_align_celeba" / name, quality=90)
        values = rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))
        values[male], values[smiling] = (1 if m else -1), (1 if s else -1)
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
    text = f"{len(rows)}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n"
    (root / "list_attr_celeba.txt").write_text(text)
    return root
