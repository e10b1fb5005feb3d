"""URL sources against a page server on 127.0.0.1, and grounded reports from them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import SourceError
from pipeline.fetch import Fetcher, fetch
from pipeline.settings import FetchPolicy
from pipeline.store import Store
from pipeline.text import md_escape
from tests.conftest import LOOPBACK, cli, db
from tests.fakeserver import FakeLLM

ARTICLE = (
    "<html><head><title>Widget docs</title></head><body><nav>Home | Products | Login</nav>"
    "<article><h1>The Widget framework</h1>"
    "<p>The Widget framework renders dashboards quickly and scales to millions of requests per day.</p>"
    "<p>Widget ships with a plugin system, so teams extend the dashboards without forking the core.</p>"
    "<p>Its documentation covers deployment on Kubernetes and on plain virtual machines.</p>"
    "</article><footer>Copyright Widget Inc.</footer></body></html>"
)


def _pdf() -> bytes:
    """A one-page PDF whose page says 'Widget benchmark report', built by hand (offsets computed)."""
    stream = b"BT /F1 12 Tf 72 720 Td (Widget benchmark report for dashboards) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


class Pages:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.conditional: list[dict[str, str]] = []
        self.article = ARTICLE

    def start(self) -> Pages:
        pages = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                pages.hits[path] = pages.hits.get(path, 0) + 1
                if path == "/article":
                    etag = f'"v1-{len(pages.article)}"'
                    if self.headers.get("If-None-Match") == etag:
                        pages.conditional.append(dict(self.headers))
                        return self.send(304, b"", "text/html", {"ETag": etag})
                    return self.send(200, pages.article.encode(), "text/html; charset=utf-8", {"ETag": etag})
                if path == "/huge":
                    return self.send(200, b"<p>" + b"x" * 3_000_000 + b"</p>", "text/html")
                if path == "/loop":
                    return self.send(302, b"", "text/html", {"Location": "/loop2"})
                if path == "/loop2":
                    return self.send(302, b"", "text/html", {"Location": "/loop"})
                if path == "/to-private":
                    return self.send(302, b"", "text/html", {"Location": "http://10.11.12.13/admin"})
                if path == "/to-metadata":
                    return self.send(302, b"", "text/html", {"Location": "http://169.254.169.254/latest/meta-data/"})
                if path == "/slow":
                    time.sleep(3)
                    return self.send(200, b"<p>late</p>", "text/html")
                if path == "/latin1":  # says UTF-8, is Latin-1
                    body = "<html><body><article><p>Caf\xe9 cr\xe8me: the Widget caf\xe9 guide for dashboards "
                    body += "and plugins, written for teams.</p></article></body></html>"
                    return self.send(200, body.encode("latin-1"), "text/html; charset=utf-8")
                if path == "/report.pdf":
                    return self.send(200, _pdf(), "application/pdf")
                if path == "/image.png":
                    return self.send(200, b"\x89PNG....", "image/png")
                if path == "/gone":
                    return self.send(404, b"not here", "text/plain")
                return self.send(500, b"boom", "text/plain")

            def send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages() -> Iterator[Pages]:
    p = Pages().start()
    yield p
    p.stop()


def test_html_is_reduced_to_its_main_text(pages: Pages) -> None:
    snap = fetch(pages.base + "/article", LOOPBACK)
    assert "renders dashboards quickly" in snap.text and "plugin system" in snap.text
    assert "Login" not in snap.text and "Copyright" not in snap.text  # navigation and footer dropped
    assert snap.status == 200 and snap.etag.startswith('"v1') and len(snap.sha256) == 64


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/huge", "byte cap"),
        ("/loop", "more than 5 redirects"),
        ("/to-private", "private, link-local or other special-purpose address"),
        ("/to-metadata", "private, link-local or other special-purpose address"),
        ("/slow", "did not answer in time"),
        ("/gone", "HTTP 404"),
        ("/boom", "HTTP 500"),
        ("/image.png", "only HTML, plain text and PDF"),
    ],
)
def test_bad_pages_fail_with_a_clear_reason(pages: Pages, path: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        fetch(pages.base + path, LOOPBACK)


def test_loopback_and_other_schemes_are_refused_by_default(pages: Pages) -> None:
    with pytest.raises(SourceError, match="loopback"):
        fetch(pages.base + "/article", FetchPolicy())
    with pytest.raises(SourceError, match="only http and https"):
        fetch("file:///etc/passwd", LOOPBACK)
    with pytest.raises(SourceError, match="only http and https"):
        fetch("ftp://127.0.0.1/x", LOOPBACK)
    assert pages.hits == {}  # nothing was requested


def test_wrong_charset_is_read_with_a_warning(pages: Pages, caplog: pytest.LogCaptureFixture) -> None:
    snap = fetch(pages.base + "/latin1", LOOPBACK)
    assert "Café crème" in snap.text
    assert "does not decode as utf-8" in caplog.text


def test_pdf_text_is_extracted(pages: Pages) -> None:
    snap = fetch(pages.base + "/report.pdf", LOOPBACK)
    assert "Widget benchmark report" in snap.text and snap.content_type == "application/pdf"


def test_snapshots_revalidate_and_fall_back(pages: Pages, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store(tmp_path / "s.duckdb")
    first = Fetcher(store, LOOPBACK).text(pages.base + "/article", "source docs")
    assert store.last_snapshot(pages.base + "/article").sha256 == first.sha256
    again = Fetcher(store, LOOPBACK).text(pages.base + "/article", "source docs")  # a new process: conditional GET
    assert again.sha256 == first.sha256 and len(pages.conditional) == 1
    pages.stop()  # the site goes down: the snapshot is used, with a warning
    fallback = Fetcher(store, LOOPBACK).text(pages.base + "/article", "source docs")
    assert fallback.text == first.text and "using the snapshot of" in caplog.text
    with pytest.raises(SourceError, match="no earlier snapshot"):
        Fetcher(store, LOOPBACK).text(pages.base + "/never-fetched", "source other")
    offline = Fetcher(store, FetchPolicy(offline=True))
    assert offline.text(pages.base + "/article", "source docs").text == first.text
    with pytest.raises(SourceError, match="no stored snapshot"):
        offline.text(pages.base + "/never-fetched", "source other")
    pages.start()  # for the fixture's teardown


def _url_workspace(workspace: Path, pages: Pages) -> None:
    cfg = workspace / "config/pipeline.toml"
    cfg.write_text(cfg.read_text() + "\n[fetch]\nallow_loopback = true\nread_timeout_s = 2\n")
    cat = workspace / "config/catalogue/web-frameworks.toml"
    text = cat.read_text()
    marker = 'id = "django"'
    assert marker in text
    cat.write_text(text.replace(marker, f'{marker}\nsources = [{{ label = "docs", url = "{pages.base}/article" }}]', 1))


def test_report_cites_passages_of_a_url_source(workspace: Path, fake: FakeLLM, pages: Pages) -> None:
    _url_workspace(workspace, pages)
    url_ids: list[str] = []

    def cite_the_page(data: dict, request: dict) -> dict:
        user = request["messages"][1]["content"]
        if 'label="docs"' not in user:
            return data  # the other subject's profile, or the pair's texts
        page = user[user.index('label="docs"') :].split("</source>")[0]
        ids = [line[1 : line.index("]")] for line in page.splitlines() if line.startswith("[P")]
        plugin = next(line[1 : line.index("]")] for line in page.splitlines() if "plugin system" in line)
        url_ids[:] = ids
        # The page is a source of django (subject a) and its profile cites it.
        for name, entry in data["dimensions"].items():
            entry["sources"] = [ids[0]]
            entry["rationale"] = f"{name}: it renders dashboards quickly."
        data["pros"][0] = {"text": "Plugin system for dashboards.", "sources": [plugin]}
        data["cons"][0] = {"text": "Unrelated claim about pricing.", "sources": [ids[0]]}
        return data

    fake.mutate = cite_the_page
    result = cli(workspace, "run", "--pair", "django,flask")
    assert result.returncode == 0, result.stderr
    md = (workspace / "reports/web-frameworks/django-vs-flask.md").read_text()
    assert url_ids and f"\\[{url_ids[0]}\\]" in md
    footnote = next(line for line in md.splitlines() if line.startswith(f"- **\\[{url_ids[0]}\\]** "))
    assert "dashboards" in footnote and md_escape(f"{pages.base}/article") in footnote and "retrieved 20" in footnote
    assert "Unrelated claim about pricing. \\[" in md and "(not supported by the cited passage)" in md
    report = json.loads((workspace / "reports/web-frameworks/django-vs-flask.json").read_text())
    statuses = {c["claim"]: c["status"] for c in report["grounding"]["claims"]}
    assert statuses["a.cons[0]"] == "unsupported" and statuses["a.pros[0]"] in ("supported", "weak")
    assert report["grounding"]["total"] == len(statuses) > report["grounding"]["supported"] > 0
    html = (workspace / "reports/web-frameworks/django-vs-flask.html").read_text()
    assert f'href="#passage-{url_ids[0]}"' in html and f'id="passage-{url_ids[0]}"' in html
    assert db(workspace, "SELECT count(*) FROM snapshots") == [(1,)]
    # offline, the page is not requested and the stored snapshot gives the same inputs: a cache hit
    hits = dict(pages.hits)
    offline = cli(workspace, "run", "--pair", "django,flask", "--offline")
    assert offline.returncode == 0 and "cache hit" in offline.stdout, offline.stderr
    assert pages.hits == hits


def test_invalid_passage_ids_are_re_asked(workspace: Path, fake: FakeLLM) -> None:
    def bad_id_once(data: dict, _request: dict) -> dict:
        if fake.calls == 1:
            data["pros"][0]["sources"] = ["P99"]
        return data

    fake.mutate = bad_id_once
    result = cli(workspace, "run", "--pair", "django,flask")
    assert result.returncode == 0, result.stderr
    assert fake.calls == 4  # django's profile twice, flask's, the texts
    reask = fake.requests[1]["messages"][-1]["content"]
    assert "P99" in reask and "pros[0].sources[0]" in reask


def test_a_url_that_never_worked_fails_its_item_clearly(workspace: Path, fake: FakeLLM, pages: Pages) -> None:
    _url_workspace(workspace, pages)
    cat = workspace / "config/catalogue/web-frameworks.toml"
    cat.write_text(cat.read_text().replace("/article", "/gone"))
    result = cli(workspace, "run", "--pair", "django,flask")
    assert result.returncode == 2 and fake.calls == 0
    assert "HTTP 404" in result.stderr and "no earlier snapshot" in result.stderr
