"""Pass protocol: a small dataclass with a kebab-case `name`, options as fields, and
`run(graph) -> graph`. Passes may edit the graph in place and return it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from imcc.ir import Graph


class Pass(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, graph: Graph) -> Graph:
        """Transform the graph; raise an ImccError subclass on impossible options."""
