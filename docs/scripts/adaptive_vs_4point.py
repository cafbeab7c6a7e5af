"""docs/text_adaptive_vs_4point.jpg: adaptive pairs against 4 points on the same curved words.

The words are drawn on three CC BY Open Images photos (openimages-camera/valid), not on the
ICDAR scenes the models were measured on: ICDAR's terms forbid redistributing its images.
Run from the repository root after the two runs of configs/text_curved_pairs.yaml:
    python docs/scripts/adaptive_vs_4point.py
"""

import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from regiondet import Detector
from regiondet.data.images import load_upright
from regiondet.data.spec import load_spec
from regiondet.data.synthetic import write_synthetic_set
from regiondet.inference.draw import draw_prediction

BACKGROUNDS = "voc:../shared/data/openimages-camera/valid"
MODELS = {
    "adaptive (up to 7 pairs)": "runs/text_curved_adaptive/best.pt",
    "4-point (2 pairs)": "runs/text_curved_4point/best.pt",
}
SIDE = 416

with tempfile.TemporaryDirectory() as tmp:
    write_synthetic_set(load_spec(BACKGROUNDS), Path(tmp), count=3, seed=3, crop=SIDE)
    print((Path(tmp) / "sources.csv").read_text())
    images = [load_upright(p) for p in sorted((Path(tmp) / "images").glob("*.jpg"))]
    rows = []
    for title, path in MODELS.items():
        det = Detector.load(path)
        row = Image.new("RGB", (SIDE * len(images), SIDE + 24), "white")
        ImageDraw.Draw(row).text((6, 4), title, fill="black")
        for i, image in enumerate(images):
            row.paste(draw_prediction(image, det.predict(image), det.classes), (i * SIDE, 24))
        rows.append(row)
out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
for k, r in enumerate(rows):
    out.paste(r, (0, k * r.height))
out.save("docs/text_adaptive_vs_4point.jpg", quality=80)
print("docs/text_adaptive_vs_4point.jpg")
