"""The interactive TC-MoA demo (Gradio): `python app.py` serves it.

demo.engine loads the model once; demo.callbacks holds the browser-free callbacks;
demo.layout builds the page; demo.example_sets finds the bundled examples.
"""
from .engine import Engine, load_engine
from .layout import build_demo, launch_options

__all__ = ["Engine", "build_demo", "launch_options", "load_engine"]
