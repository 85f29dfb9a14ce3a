"""The interactive TC-MoA demo (Gradio): `python app.py` serves it.

demo.engine loads the model once; demo.callbacks and demo.analysis hold the browser-free callbacks
(demo.sources checks a request, demo.downloads writes the files the page hands out, demo.alignment_view
draws the alignment tab and words the alignment notes); demo.layout lays
out the page's components (named in demo.components, styled by demo/style.css) as demo.opening shows
them on arrival; demo.events wires them (demo.fusion_events: what fuses, demo.control_events: what sets
inputs); demo.page puts the two together; demo.api is the /fuse endpoint; demo.gpu runs model calls
inside `spaces.GPU` on Hugging Face ZeroGPU; demo.example_sets finds the bundled examples.
"""
from . import gpu  # noqa: F401  first: on Spaces, `spaces` must be imported before CUDA initialises
from .engine import Engine, load_engine
from .page import build_demo, launch_options

__all__ = ["Engine", "build_demo", "launch_options", "load_engine"]
