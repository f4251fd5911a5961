"""HTML pages: the search page, a shell that the scripts in static/ fill from the JSON API, and
error pages for paths outside /api/ (which keep their JSON errors)."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from whysim.search.api.errors import http_error, is_api_path
from whysim.search.api.routes import services
from whysim.search.api.settings import ApiSettings

K_CHOICES = (5, 10, 20, 50, 100)
PAGE_ERROR_CODES = (404, 405, 500)
ERROR_TEXT = {
    404: ("Page not found", "There is nothing at this address."),
    405: ("Method not allowed", "This page cannot be used that way."),
    500: ("Something went wrong", "The server ran into an unexpected error; the details are in its log."),
}

pages = Blueprint("pages", __name__)


def k_choices(settings: ApiSettings) -> list[int]:
    """The result counts offered by the page: the usual ones the server allows, and its default."""
    return sorted({k for k in K_CHOICES if k <= settings.max_k} | {settings.default_k})


@pages.route("/")
def search_page() -> str:
    settings = services().settings
    return render_template("search.html", k_choices=k_choices(settings), default_k=settings.default_k)


def page_error(error: HTTPException) -> Response | tuple[str, int]:
    """App-level handler for PAGE_ERROR_CODES: a page for people, JSON for /api/ clients."""
    if is_api_path(request.path):
        return http_error(error)
    code = error.code or 500
    title, text = ERROR_TEXT.get(code, (error.name, error.description or ""))
    return render_template("error.html", code=code, title=title, text=text), code


def register_pages(app: Flask) -> None:
    app.register_blueprint(pages)
    for code in PAGE_ERROR_CODES:
        app.register_error_handler(code, page_error)
