"""TensorBoard logging: prefixed scalars, the resolved config as text, hparams for sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

PREFIXES = ("train/", "eval/", "perf/")


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict → {"a.b.c": value}; empty dicts vanish."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


class Logger:
    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        # purge_step drops points a killed run logged after its last checkpoint
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        """Write each value (a tensor's .item() happens only here) under its prefixed tag."""
        for tag, value in values.items():
            if not tag.startswith(PREFIXES):
                raise ValueError(f"metric {tag!r} must start with one of {PREFIXES}")
            if value is None:
                continue
            self.writer.add_scalar(tag, value.item() if isinstance(value, torch.Tensor) else float(value), step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """A matplotlib figure as a TensorBoard image (closes the figure)."""
        self.writer.add_figure(tag, figure, step)

    def gif(self, tag: str, data: bytes, height: int, width: int, step: int) -> None:
        """An animated GIF (an evaluation video) as a TensorBoard image."""
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, params: Mapping[str, Any], metric_tags: list[str]) -> None:
        """HParams entry for this run, pointing at scalars the run logs itself."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        for summary in hparams(clean, {tag: 0.0 for tag in metric_tags}):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
