"""Pascal VOC XML: a folder of .xml files (Roboflow export) or a VOC root with ImageSets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from regiondet.data.images import IMAGE_SUFFIXES, image_size, list_images
from regiondet.data.report import LoadReport, check_box
from regiondet.data.sample import Sample
from regiondet.errors import UserError


def read_voc(path: str, split: str | None, report: LoadReport, rescale: bool = False) -> list[Sample]:
    """Read VOC annotations.

    An XML whose <size> differs from its image's is an error unless `rescale` (SPEC option
    `?rescale=1`): then its boxes are scaled to the image file, and counted.

    `path` is either a folder holding .xml files (images beside them or named by
    <filename>), or a VOC root (Annotations/, JPEGImages/) with `split` naming
    ImageSets/Main/<split>.txt. Without a split list, images that have no XML are
    object-free images (LabelImg writes no file for them) and are read as negatives.
    """
    root = Path(path)
    if not root.is_dir():
        raise UserError("VOC folder not found", root)
    if (root / "Annotations").is_dir():
        ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
        if split:
            list_file = root / "ImageSets" / "Main" / f"{split}.txt"
            if not list_file.is_file():
                raise UserError(f"split list for '{split}' not found", list_file)
            ids = [ln.split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
            xmls = [ann_dir / f"{i}.xml" for i in ids]
        else:
            xmls = sorted(ann_dir.glob("*.xml"))
    else:
        if split:
            raise UserError(f"split '{split}' given but there is no Annotations/ folder", root)
        ann_dir = img_dir = root
        xmls = sorted(root.glob("*.xml"))
    if not xmls:
        raise UserError("no .xml annotation files found", ann_dir)
    samples = [parse_voc_xml(x, img_dir, report, rescale) for x in xmls]
    if not split:
        samples += _unannotated(img_dir, {s.path.resolve() for s in samples}, report)
    return samples


def _unannotated(img_dir: Path, annotated: set[Path], report: LoadReport) -> list[Sample]:
    """Images of the folder that no XML names: samples without objects."""
    out = []
    if not img_dir.is_dir():
        return out
    for image in list_images(img_dir):
        if image.resolve() not in annotated:
            width, height = image_size(image)
            out.append(Sample(image, width, height, np.zeros((0, 4), np.float32), []))
    report.add("images without an XML read as negatives", str(out[0].path) if out else "", len(out))
    return out


def _find_image(xml_path: Path, filename: str | None, img_dir: Path) -> Path:
    candidates = []
    if filename:
        candidates += [img_dir / filename, xml_path.parent / filename]
    candidates += [xml_path.with_suffix(s) for s in sorted(IMAGE_SUFFIXES)]
    candidates += [img_dir / (xml_path.stem + s) for s in sorted(IMAGE_SUFFIXES)]
    for c in candidates:
        if c.is_file():
            return c
    raise UserError(f"image '{filename or xml_path.stem}' named by the annotation not found", xml_path)


def parse_voc_xml(xml_path: Path, img_dir: Path, report: LoadReport, rescale: bool = False) -> Sample:
    """One VOC XML file to a Sample; malformed XML or numbers name the file. Boxes are in the
    image file's pixels: a <size> other than the image's is an error, or with `rescale` the
    boxes are scaled from it."""
    if not xml_path.is_file():
        raise UserError("annotation file not found", xml_path)
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise UserError(f"malformed XML ({e})", xml_path) from None
    image = _find_image(xml_path, tree.findtext("filename"), img_dir)
    try:
        width = int(float(tree.findtext("size/width") or 0))
        height = int(float(tree.findtext("size/height") or 0))
    except ValueError:
        raise UserError("malformed <size> element", xml_path) from None
    if width <= 0 or height <= 0:
        width, height = image_size(image)
    try:
        actual = image_size(image)
    except UserError:  # an unreadable image is reported where it is decoded, as for other formats
        actual = (width, height)
    scale = None
    if (width, height) != actual:
        if not rescale:
            raise UserError(
                f"<size> says {width}x{height} but the image {image.name} is {actual[0]}x{actual[1]}; "
                "fix the XML, or read with SPEC option ?rescale=1 to scale its boxes to the image",
                xml_path,
            )
        scale = (actual[0] / width, actual[1] / height)
        report.add("XMLs whose <size> differs from the image: boxes rescaled", str(xml_path))
        width, height = actual
    boxes, labels, ignore = [], [], []
    for k, obj in enumerate(tree.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if not name or bnd is None:
            raise UserError("<object> without <name> or <bndbox>", xml_path)
        try:
            box = [float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise UserError(f"malformed <bndbox> for object '{name}'", xml_path) from None
        check_box(box, xml_path, what=f"<bndbox> of <object> {k} ('{name}')")
        if scale:
            box = [box[0] * scale[0], box[1] * scale[1], box[2] * scale[0], box[3] * scale[1]]
        boxes.append(box)
        labels.append(name)
        ignore.append((obj.findtext("difficult") or "0").strip() in ("1", "true"))
    return Sample(image, width, height, np.array(boxes, np.float32).reshape(-1, 4), labels, np.array(ignore))
