"""The one model the demo serves: loaded once at start-up and shared by every request."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from tcmoa import Fuser, load_model
from tcmoa.device import release_freed_memory
from tcmoa.fuse.pipeline import FuseSettings, FusionResult, preparation_key
from tcmoa.fuse.prepare import Prepared
from tcmoa.imaging import MIN_SIDE as MIN_SIDE  # the library's one minimum side (demo/sources.py takes it from here)

from . import gpu

# The demo's own limits, tighter than the library's (64 MP per source, any count): a public server
# shares two CPU cores between everyone, at ~2-4 s per megapixel.
MAX_PIXELS = 16_000_000  # per source
REQUEST_PIXELS = 32_000_000  # all sources of one request together
MAX_FILE_MB = 25
MAX_SOURCES = 8  # the page's slots and /fuse alike
# Resolutions. The page and /fuse fuse at most WORKING_PIXELS (~1 s on 2 cores); the full resolution
# is computed on request (the page's "Full resolution" button, /fuse full_resolution=True) in a lane
# of its own, so a large image never holds up anyone else's small one.
WORKING_PIXELS = 1_048_576
# While a slider is dragged: the same fusion as the final one (the token path bounded, the output head
# on the sources), with the token path at 384x256 and the image at most 640x480, so it looks like
# what follows at a quarter of the token path's work.
PREVIEW_PIXELS = 307_200
PREVIEW_TOKEN_PIXELS = 98_304
FUSION_CONCURRENCY = 2  # working-resolution fusions running at once; more wait in the queue
FULL_CONCURRENCY = 1  # full-resolution fusions running at once, in their own lane
FUSION_LANE, FULL_LANE = "fusion", "full"  # the two lanes' Gradio concurrency ids (the page's and the API's)
QUEUE_SIZE = 64  # requests waiting in all lanes together; beyond it a user is told the queue is full
APP_TILE_SIZE = 1024  # tiles of at most 1 MP where a model still tiles (the official ones, without an output head)
UNTRAINED_WARNING = "untrained model: outputs are not meaningful fusion yet"
# What "Align sources" starts at, on the page and in /fuse (one of tcmoa.align.ALIGN_MODES).
DEFAULT_ALIGN = "off"


class PreparedCache:
    """The last few source sets' preparation (reading checks, alignment, de-ghosting), by content and settings.

    Dragging α or β fuses the same sources again and again: their alignment is found once. Only sources
    at most the working resolution are kept (a full-resolution request is one-off, and large).
    """

    def __init__(self, size: int = 4, max_pixels: int = WORKING_PIXELS):
        self.size, self.max_pixels = size, max_pixels
        self._items, self._lock = OrderedDict[tuple, Prepared](), threading.Lock()

    def get(self, fuser: Fuser, images: Sequence[np.ndarray], settings: FuseSettings) -> Prepared:
        """The preparation of `images` under `settings`: kept, or made now (and kept when small enough)."""
        if max(im.shape[0] * im.shape[1] for im in images) > self.max_pixels:
            return fuser.prepare(list(images), settings)
        digest = hashlib.blake2b(digest_size=16)
        for image in images:
            digest.update(repr((image.shape, image.dtype.str)).encode())
            digest.update(np.ascontiguousarray(image).data)
        key = (digest.hexdigest(), preparation_key(settings))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        prepared = fuser.prepare(list(images), settings)
        with self._lock:
            self._items[key] = prepared
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return prepared


@dataclass(frozen=True)
class Engine:
    """A Fuser plus what the UI says about it; immutable, so sharing it between users is safe."""

    fuser: Fuser
    model_name: str
    trained: bool
    router_names: tuple[str, ...]
    load_note: str = ""
    max_pixels: int = MAX_PIXELS
    max_file_mb: float = MAX_FILE_MB
    request_pixels: int = REQUEST_PIXELS
    _fuse_jobs: Callable[..., list[FusionResult]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fuser, prepared = self.fuser, PreparedCache()

        def fuse_jobs(images: list[np.ndarray], jobs: list[FuseSettings], maps: bool,
                      progress: Callable[[float], None] | None) -> list[FusionResult]:
            return [fuser.fuse(images, settings, maps=maps, progress=progress,
                               prepared=prepared.get(fuser, images, settings)) for settings in jobs]

        # A closure over the fuser: on ZeroGPU only the images and settings are pickled to the GPU worker.
        object.__setattr__(self, "_fuse_jobs", gpu.on_gpu(fuse_jobs))

    def fuse(self, images: Sequence[np.ndarray], jobs: Sequence[FuseSettings], *, maps: bool = False,
             progress: Callable[[float], None] | None = None) -> list[FusionResult]:
        """One fusion per settings (Fuser.settings) in one GPU call (`spaces.GPU` on ZeroGPU)."""
        if gpu.ZERO_GPU:  # a progress callback cannot be pickled into the GPU worker: no progress there
            progress = None
        try:
            return self._fuse_jobs(list(images), list(jobs), maps, progress)
        finally:
            release_freed_memory(max((im.shape[0] * im.shape[1] for im in images), default=0))

    @property
    def device_label(self) -> str:
        """'GPU (name, precision)', 'GPU (ZeroGPU, precision)' or 'CPU (n threads)'."""
        device = self.fuser.device
        if device.type == "cuda":  # on ZeroGPU the main process must not initialise CUDA: no device name
            name = "ZeroGPU" if gpu.ZERO_GPU else torch.cuda.get_device_name(device)
            return f"GPU ({name}, {self.fuser.precision})"
        return f"CPU ({torch.get_num_threads()} threads)"

    @property
    def fusion_output(self) -> str:
        """How the model makes its image: "pyramid" (the shipped model), "source_weights" or "decoder" (official)."""
        return str(self.fuser.model.config.fusion_output)

    @property
    def model_label(self) -> str:
        """'name (trained)' or 'name (untrained)'."""
        return f"{self.model_name} ({'trained' if self.trained else 'untrained'})"


def load_engine(model: str | None = None, device: str | None = None,
                max_pixels: int = MAX_PIXELS) -> Engine:
    """Load a model (path, preset, or the shipped one, else the untrained compact preset) once."""
    note = ""
    if model is None:
        try:
            net = load_model(None)
        except FileNotFoundError:
            net = load_model("compact")
            note = ("No trained checkpoint is shipped in `checkpoints/` yet, so this demo runs the randomly "
                    "initialised **compact** preset: the interface works end to end, the pictures do not mean much.")
    else:
        net = load_model(model)
    fuser = Fuser(net, device=device, max_pixels=max_pixels, tile_size=APP_TILE_SIZE)
    info = net.info
    return Engine(fuser=fuser, model_name=str(info.get("name", net.config.name)), trained=bool(info.get("trained")),
                  router_names=tuple(net.config.routers), load_note=note, max_pixels=max_pixels)
