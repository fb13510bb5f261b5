"""Dependency analysis: groups of coupled channels, one handler per layer type."""

from kprune.graph.dependency import DependencyGraph, Group, Member, analyze
from kprune.graph.handlers import Boundary, LayerHandler, Merge, PassThrough, Producer
from kprune.graph.registry import handler_for, register_handler, supported_classes

__all__ = [
    "Boundary",
    "DependencyGraph",
    "Group",
    "LayerHandler",
    "Member",
    "Merge",
    "PassThrough",
    "Producer",
    "analyze",
    "handler_for",
    "register_handler",
    "supported_classes",
]
