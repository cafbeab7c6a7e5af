"""The constants of a frozen TensorFlow graph (a `GraphDef` protobuf), read without TensorFlow
or OpenCV: a few messages of TensorFlow's schema declared here, parsed by the protobuf package.

OpenCV 5.1 dropped its TensorFlow importer, which is how these weights were first read; the
protobuf wire format of GraphDef is stable, so the schema below will keep reading the file.
Unknown fields (the graph's other attributes) are skipped by the parser.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from regiondet.errors import UserError

# tensorflow/core/framework/types.proto: the DataType numbers of the tensors read here
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}


class _F:
    """descriptor.proto's FieldDescriptorProto numbers (protobuf itself is imported when used)."""

    TYPE_DOUBLE, TYPE_FLOAT, TYPE_INT64, TYPE_INT32, TYPE_STRING, TYPE_MESSAGE, TYPE_BYTES = 1, 2, 3, 5, 9, 11, 12
    LABEL_OPTIONAL, LABEL_REPEATED = 1, 3


# (message, [(field name, number, type, label, message type name)]): the part of
# graph.proto, node_def.proto, attr_value.proto, tensor.proto and tensor_shape.proto read here
_SCHEMA = [
    ("Dim", [("size", 1, _F.TYPE_INT64, _F.LABEL_OPTIONAL, None)]),
    ("TensorShapeProto", [("dim", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Dim")]),
    (
        "TensorProto",
        [
            ("dtype", 1, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),  # an enum: a varint on the wire
            ("tensor_shape", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "TensorShapeProto"),
            ("tensor_content", 4, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
            ("float_val", 5, _F.TYPE_FLOAT, _F.LABEL_REPEATED, None),
            ("double_val", 6, _F.TYPE_DOUBLE, _F.LABEL_REPEATED, None),
            ("int_val", 7, _F.TYPE_INT32, _F.LABEL_REPEATED, None),
            ("int64_val", 10, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
        ],
    ),
    ("AttrValue", [("tensor", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "TensorProto")]),
    (
        "AttrEntry",  # map<string, AttrValue> on the wire: repeated (key = 1, value = 2)
        [
            ("key", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("value", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "AttrValue"),
        ],
    ),
    (
        "NodeDef",
        [
            ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("op", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
            ("attr", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "AttrEntry"),
        ],
    ),
    ("GraphDef", [("node", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "NodeDef")]),
]


@cache
def _graph_def_class():
    """The GraphDef message class, built once from the schema above."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise UserError("reading a TensorFlow graph needs protobuf: pip install 'regiondet[pretrained]'") from None
    package = "regiondet_tf"
    file = descriptor_pb2.FileDescriptorProto(name="regiondet_tf_graph.proto", package=package, syntax="proto3")
    for name, fields in _SCHEMA:
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = message.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.GraphDef"))


def graph_constants(path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Every Const node whose name starts with prefix, as a NumPy array, in graph order."""
    path = Path(path)
    graph = _graph_def_class()()
    from google.protobuf.message import DecodeError  # importable: _graph_def_class checked protobuf

    try:
        graph.ParseFromString(path.read_bytes())
    except FileNotFoundError:
        raise UserError("TensorFlow graph file not found", path) from None
    except (DecodeError, RuntimeError) as e:
        raise UserError(f"not a TensorFlow GraphDef protobuf ({e})", path) from None
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op != "Const" or not node.name.startswith(prefix):
            continue
        value = next((a.value for a in node.attr if a.key == "value"), None)
        if value is None or not value.HasField("tensor"):
            continue
        out[node.name] = _array(value.tensor, node.name, path)
    return out


def _array(t, name: str, path: Path) -> np.ndarray:
    """A TensorProto as an array: packed bytes, or a value list (one value fills the shape)."""
    if t.dtype not in DTYPES:
        raise UserError(f"constant {name} has TensorFlow dtype {t.dtype}, not one read here", path)
    dtype = np.dtype(DTYPES[t.dtype])
    shape = tuple(d.size for d in t.tensor_shape.dim)
    if t.tensor_content:
        flat = np.frombuffer(t.tensor_content, dtype.newbyteorder("<")).astype(dtype)
    else:
        values = {np.float32: t.float_val, np.float64: t.double_val, np.int32: t.int_val, np.int64: t.int64_val}
        flat = np.asarray(values[DTYPES[t.dtype]], dtype)
        if flat.size == 1 and int(np.prod(shape)) != 1:
            flat = np.full(int(np.prod(shape)), flat[0], dtype)
    if flat.size != int(np.prod(shape)):
        raise UserError(f"constant {name} holds {flat.size} values for shape {shape}", path)
    return flat.reshape(shape)
