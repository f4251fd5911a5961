"""`whysim serve`: the web app on werkzeug's threaded server; prints the page's URL once it listens."""
from __future__ import annotations

from pathlib import Path

import click
from werkzeug.serving import make_server

from indexer.cli import data_dir_options, datadir_from
from search.settings import DEFAULT_MAX_UPLOAD_BYTES, ApiSettings
from webui.app import create_app


@click.command("serve")
@data_dir_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001), default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
              show_default=True, help="Largest accepted upload, in MiB.")
@click.option("--max-k", type=click.IntRange(min=1), default=ApiSettings.max_k, show_default=True,
              help="Most hits one search may ask for.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where queries are embedded and explained.")
def serve_command(data_dir: Path, catalog_url: str | None, host: str, port: int, max_upload_mb: float,
                  max_k: int, device: str) -> None:
    """Serve the search page and the JSON API (under /api/) for a data directory."""
    datadir = datadir_from(data_dir, catalog_url)
    app = create_app({
        "WHYSIM_DATA_DIR": str(datadir.root), "WHYSIM_CATALOG_URL": datadir.catalog_url_override,
        "MAX_CONTENT_LENGTH": int(max_upload_mb * 2**20), "WHYSIM_MAX_K": max_k, "WHYSIM_DEVICE": device,
    })
    # When it cannot listen (port taken, address not ours), werkzeug says why and exits with 1.
    server = make_server(host, port, app, threaded=True)
    # Port 0 picks a free port: the URL printed is the one really listened on.
    click.echo(f"serving {datadir.root} at {page_url(host, server.server_port)} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


def page_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


COMMANDS = [serve_command]
