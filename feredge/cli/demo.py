"""``feredge demo``: the web demo and ``POST /predict`` on this device, bound to localhost by default.

Only argparse at import time; Gradio and uvicorn are imported by ``run``.
"""

from __future__ import annotations

import argparse
import sys

from feredge.cli.options import (
    add_detect_size_option,
    add_labels_option,
    add_prior_tau_option,
    detect_size_argument,
    port_number,
    positive_int,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="a .tflite or .onnx model; repeat to compare models (the shipped model is added when installed)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 serves the LAN")
    parser.add_argument("--port", type=port_number, default=7860, help="port (0: any free port) (default: 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    parser.add_argument(
        "--detector-model",
        metavar="PATH",
        help="a YuNet .onnx file to use instead of the shipped one for the yunet detector (the default detector); "
        "checked at start-up",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="requests analyzed at once, each on its own recognizer (default: one per core, with "
        "cores / N interpreter threads each)",
    )
    add_labels_option(parser)
    add_detect_size_option(parser)
    add_prior_tau_option(parser)


def run(args: argparse.Namespace) -> int:
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService, model_choices
    from feredge.edge.options import RecognizerOptions

    options = RecognizerOptions(
        labels=args.labels,
        detector_model=args.detector_model,
        prior_tau=args.prior_tau,
        detect_size=detect_size_argument(args.detect_size),
    )
    service = DemoService(model_choices(args.model), options, workers=args.workers)
    with BackgroundServer(create_app(service), args.host, args.port) as server:
        print(f"feredge demo: open {server.url}  (REST: POST {server.url}/predict)", flush=True)
        if args.share:
            print(_share(server), flush=True)
        print(
            f"{service.workers} request(s) at once, {service.default_threads} interpreter thread(s) each "
            "(--workers); press Ctrl-C to stop",
            file=sys.stderr,
        )
        server.wait()
    return 0


def _share(server) -> str:
    """A gradio.live tunnel to the running server; a failure leaves the local server running."""
    import secrets

    from gradio.networking import setup_tunnel

    try:
        url = setup_tunnel(server.host, server.port, secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # the tunnel client raises many kinds; sharing is optional
        return f"feredge demo: no share link ({exc}); serving locally only"
    return f"feredge demo: public link {url.replace('http://', 'https://', 1)}"
