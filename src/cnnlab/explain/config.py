"""The configuration ``cnnlab explain`` works out, parsed and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab._validate import pair, positive_int

__all__ = ["HTML_LIMITS", "JSON_LIMITS", "TEXT_LIMITS", "ExplainConfig", "parse_pair"]

#: the largest configuration printed as text, LaTeX or figures (beyond it the sums
#: stop being readable): input side, kernel side, depth, filters
TEXT_LIMITS = {"input": 8, "kernel": 5, "depth": 3, "filters": 3}
#: the largest configuration for --json (machine-readable, so larger is fine)
JSON_LIMITS = {"input": 16, "kernel": 7, "depth": 4, "filters": 4}
#: the largest configuration for --html (grids that still fit a screen; the page's
#: controls have the same limits)
HTML_LIMITS = {"input": 12, "kernel": 5, "depth": 3, "filters": 3}


def parse_pair(text: object, name: str, minimum: int = 1) -> tuple[int, int]:
    """``"3x4"`` → (3, 4); ``"3"`` or ``3`` → (3, 3); an int pair passes through."""
    if isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        if len(parts) not in (1, 2) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"{name} must be an int or AxB (e.g. 3x2), got {text!r}")
        values = [int(p) for p in parts]
        text = (values[0], values[-1])
    return pair(text, name, minimum=minimum)


@dataclass(frozen=True)
class ExplainConfig:
    """A convolution layer small enough to write out: sizes are (rows, columns)."""

    input: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    depth: int
    filters: int

    @classmethod
    def make(
        cls,
        input: Any = (3, 3),
        kernel: Any = (2, 2),
        stride: Any = 1,
        padding: Any = 0,
        depth: Any = 1,
        filters: Any = 1,
        dilation: Any = 1,
    ) -> ExplainConfig:
        """Parse and validate (ValueError with what is wrong and what is expected)."""
        cfg = cls(
            input=parse_pair(input, "input"),
            kernel=parse_pair(kernel, "kernel"),
            stride=parse_pair(stride, "stride"),
            padding=parse_pair(padding, "padding", minimum=0),
            dilation=parse_pair(dilation, "dilation"),
            depth=positive_int(depth, "depth"),
            filters=positive_int(filters, "filters"),
        )
        for a, axis in ((0, "height"), (1, "width")):
            padded = cfg.input[a] + 2 * cfg.padding[a]
            if cfg.k_eff[a] > padded:
                raise ValueError(
                    f"the kernel's effective {axis} {cfg.k_eff[a]} (dilation·(k-1)+1) is larger "
                    f"than the padded input's {axis} {padded}; use a smaller kernel or more "
                    "padding"
                )
        return cfg

    @property
    def k_eff(self) -> tuple[int, int]:
        return (
            self.dilation[0] * (self.kernel[0] - 1) + 1,
            self.dilation[1] * (self.kernel[1] - 1) + 1,
        )

    @property
    def output(self) -> tuple[int, int]:
        return (
            (self.input[0] + 2 * self.padding[0] - self.k_eff[0]) // self.stride[0] + 1,
            (self.input[1] + 2 * self.padding[1] - self.k_eff[1]) // self.stride[1] + 1,
        )

    def check_size(self, limits: dict[str, int], what: str) -> None:
        """Refuse a configuration too large for ``what`` (the message gives the limits)."""
        too_big = (
            max(self.input) > limits["input"]
            or max(self.kernel) > limits["kernel"]
            or self.depth > limits["depth"]
            or self.filters > limits["filters"]
        )
        if too_big:
            raise ValueError(
                f"this configuration is too large to print readably as {what}: the limits are "
                f"input <= {limits['input']}x{limits['input']}, kernel <= "
                f"{limits['kernel']}x{limits['kernel']}, depth <= {limits['depth']}, "
                f"filters <= {limits['filters']}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "input": list(self.input),
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "depth": self.depth,
            "filters": self.filters,
            "output": list(self.output),
        }

    def describe(self) -> str:
        def s(p: tuple[int, int]) -> str:
            return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

        return (
            f"input {self.input[0]}×{self.input[1]}, depth {self.depth}; "
            f"{self.filters} filter{'s' if self.filters > 1 else ''} "
            f"{self.kernel[0]}×{self.kernel[1]}; stride {s(self.stride)}, "
            f"padding {s(self.padding)}, dilation {s(self.dilation)} "
            f"→ output {self.output[0]}×{self.output[1]}"
        )
