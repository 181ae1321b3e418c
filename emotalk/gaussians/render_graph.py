"""A function of fixed-shape CUDA tensors captured once as a CUDA graph and replayed: one launch instead of
the ~100 small kernels of the per-frame deformation (`fast_render`). Never used for the rasterizer, whose
work sizes depend on the data.

Inputs live in static buffers: per-frame inputs are copied in on every call (a smaller batch fills the
first rows; the rest keep earlier, finite values and their outputs are cut off), per-request inputs only
when a different tensor is given. Outputs are the graph's own buffers, overwritten by the next replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class DeformGraph:
    """fn(*per_frame, *per_request) -> tuple of tensors [B,...], captured for per_frame inputs of batch B."""

    def __init__(self, fn: Callable[..., tuple[Tensor, ...]], per_frame: list[Tensor],
                 per_request: list[Tensor | None], warmup: int = 2, blocks: int = 1):
        """blocks: how many batch-sized blocks each output stacks along dim 0 (2: face then mouth)."""
        self.blocks = blocks
        self.frame_in = [x.detach().clone() for x in per_frame]  # static buffers [B,...]
        self.req_in = [None if x is None else x.detach().clone() for x in per_request]
        self._req_src: list[Tensor | None] = list(per_request)  # the tensors the buffers were copied from
        self.batch = self.frame_in[0].shape[0]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():  # warm-up (and compilation) off the capture
            for _ in range(warmup):
                fn(*self.frame_in, *self.req_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads of the app may use CUDA (speech features) while this one captures
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"), torch.no_grad():
            self.out = tuple(fn(*self.frame_in, *self.req_in))

    def __call__(self, per_frame: list[Tensor], per_request: list[Tensor | None]) -> tuple[Tensor, ...]:
        """Copy the inputs in, replay, and give the outputs cut to the batch of per_frame."""
        B = per_frame[0].shape[0]
        if B > self.batch:
            raise ValueError(f"batch {B} is larger than the captured {self.batch}")
        for buf, x in zip(self.frame_in, per_frame):
            (buf if B == self.batch else buf[:B]).copy_(x)
        for i, x in enumerate(per_request):
            if x is not self._req_src[i]:
                if (x is None) != (self.req_in[i] is None):
                    raise ValueError("request input changed between None and a tensor: capture another graph")
                if x is not None:
                    self.req_in[i].copy_(x)
                self._req_src[i] = x
        self.graph.replay()
        if B == self.batch:
            return self.out
        n = self.batch
        if self.blocks == 1:
            return tuple(o[:B] for o in self.out)
        return tuple(torch.cat([o[k * n:k * n + B] for k in range(self.blocks)]) for o in self.out)
