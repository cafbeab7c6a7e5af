"""docs/text_adaptive_vs_4point.jpg: the same held-out curved images, adaptive pairs against 4 points.

Run from the repository root after the two runs of configs/text_curved_pairs.yaml:
    python docs/scripts/adaptive_vs_4point.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

from regiondet import Detector
from regiondet.data.images import load_upright
from regiondet.inference.draw import draw_prediction

IMAGES = [Path(f"runs/synthetic-curved-val/images/synth_{i:05d}.jpg") for i in (0, 3, 5)]
MODELS = {
    "adaptive (up to 7 pairs)": "runs/text_curved_adaptive/best.pt",
    "4-point (2 pairs)": "runs/text_curved_4point/best.pt",
}
SIDE = 400

rows = []
for title, path in MODELS.items():
    det = Detector.load(path)
    tiles = []
    for p in IMAGES:
        image = load_upright(p)
        tile = draw_prediction(image, det.predict(image), det.classes).resize((SIDE, SIDE))
        tiles.append(tile)
    row = Image.new("RGB", (SIDE * len(tiles), SIDE + 24), "white")
    ImageDraw.Draw(row).text((6, 4), title, fill="black")
    for i, t in enumerate(tiles):
        row.paste(t, (i * SIDE, 24))
    rows.append(row)
out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
y = 0
for r in rows:
    out.paste(r, (0, y))
    y += r.height
out.save("docs/text_adaptive_vs_4point.jpg", quality=80)
print("docs/text_adaptive_vs_4point.jpg")
