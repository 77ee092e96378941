"""Reads the protobuf exposition back with the ``protobuf`` package over client_model's own
``metrics.proto`` (vendored beside this module), independently of the exporter's encoder."""

# No ``protoc`` is needed: the schema's few constructs (proto2 messages of scalar, enum and
# message fields, one enum, one import) are read into a ``FileDescriptorProto`` here.

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

__all__ = ["MetricFamily", "decode_delimited"]

_SCHEMA = Path(__file__).with_name("client_model") / "metrics.proto"
_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "string": _F.TYPE_STRING,
    "uint64": _F.TYPE_UINT64,
    "uint32": _F.TYPE_UINT32,
    "int64": _F.TYPE_INT64,
    "sint32": _F.TYPE_SINT32,
    "sint64": _F.TYPE_SINT64,
}
_FIELD = re.compile(r"^\s*(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)")


def _file() -> descriptor_pb2.FileDescriptorProto:
    text = re.sub(r"//[^\n]*", "", _SCHEMA.read_text())
    fd = descriptor_pb2.FileDescriptorProto(
        name="io/prometheus/client/metrics.proto",
        package="io.prometheus.client",
        syntax="proto2",
        dependency=["google/protobuf/timestamp.proto"],
    )
    enums = set(re.findall(r"enum\s+(\w+)\s*{", text))
    for name, body in re.findall(r"enum\s+(\w+)\s*{([^}]*)}", text):
        enum = fd.enum_type.add(name=name)
        for value, number in re.findall(r"(\w+)\s*=\s*(\d+)", body):
            enum.value.add(name=value, number=int(number))
    for name, body in re.findall(r"message\s+(\w+)\s*{([^}]*)}", text):
        message = fd.message_type.add(name=name)
        for line in body.split(";"):
            match = _FIELD.match(line)
            if match is None:
                continue
            label, kind, field_name, number = match.groups()
            field = message.field.add(name=field_name, number=int(number))
            field.label = _F.LABEL_REPEATED if label == "repeated" else _F.LABEL_OPTIONAL
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind == "google.protobuf.Timestamp":
                field.type, field.type_name = _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"
            elif kind in enums:
                field.type, field.type_name = _F.TYPE_ENUM, f".io.prometheus.client.{kind}"
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, f".io.prometheus.client.{kind}"
    return fd


def _classes() -> Any:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(_file())
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("io.prometheus.client.MetricFamily")
    )


MetricFamily = _classes()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` (a family's length prefix) and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def decode_delimited(data: bytes) -> list[Any]:
    """Every ``MetricFamily`` of a length-delimited page, in order; raises on a damaged one."""
    out = []
    pos = 0
    while pos < len(data):
        size, pos = _varint(data, pos)
        if pos + size > len(data):
            raise ValueError(f"a family of {size} bytes runs past the end at {pos}")
        family = MetricFamily()
        family.ParseFromString(data[pos : pos + size])
        out.append(family)
        pos += size
    return out
