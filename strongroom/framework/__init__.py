"""Declarative toolkit for engines: paths, typed fields, routing, help and OpenAPI."""

from strongroom.framework.backend import FrameworkBackend
from strongroom.framework.fields import MISSING, Field, FieldData, FieldType
from strongroom.framework.path import Display, Path, PathOperation, operations

__all__ = [
    "MISSING",
    "Display",
    "Field",
    "FieldData",
    "FieldType",
    "FrameworkBackend",
    "Path",
    "PathOperation",
    "operations",
]
