"""Serve the TC-MoA fusion demo in the browser: `python app.py` (http://127.0.0.1:7860).

Options: --port, --host (0.0.0.0 to serve the network; on Spaces Gradio's environment sets both),
--share (a public Gradio link),
--model (a model folder, an official .pth or a preset name; default: the shipped model, else the
untrained compact preset), --device (cpu, cuda, cuda:1; default: the GPU when present).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from demo import build_demo, launch_options, load_engine
from tcmoa.device import pick_device, reuse_freed_memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="Interactive TC-MoA image-fusion demo (Gradio).")
    # Defaults from Gradio's own variables: Hugging Face Spaces sets GRADIO_SERVER_NAME=0.0.0.0.
    parser.add_argument("--port", type=int, default=None, help="port to serve on (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default $GRADIO_SERVER_NAME or 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument("--model", default=None, metavar="PATH_OR_PRESET",
                        help="model folder, official .pth, or preset (default: shipped model, else 'compact')")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: GPU when present)")
    return parser.parse_args(argv)


def check_port(host: str | None, port: int | None) -> None:
    """Exit 2 with one line when the address is taken (before the model loads, not in Gradio's traceback)."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            sys.exit(f"app.py: cannot serve on {host}:{port} ({exc.strerror or exc}); is another app running "
                     f"there? Pass --port to use another port")


def main(argv: list[str] | None = None) -> None:
    """Check the options, load the model once, build the page and serve it."""
    args = parse_args(argv)
    try:
        pick_device(args.device)
    except ValueError as exc:
        print(f"app.py: --device: {exc}", file=sys.stderr)
        sys.exit(2)
    check_port(args.host, args.port)
    reuse_freed_memory()  # this process is the app's: tensors reuse freed memory (tcmoa.device)
    try:
        engine = load_engine(args.model, args.device)
    except (FileNotFoundError, ValueError, KeyError) as exc:  # bad path / preset / device: one clear line
        raise SystemExit(f"app.py: cannot load the model: {exc}") from None
    print(f"model {engine.model_label} on {engine.device_label}")
    build_demo(engine).launch(server_name=args.host, server_port=args.port, share=args.share,
                              **launch_options(engine))


if __name__ == "__main__":
    main()
