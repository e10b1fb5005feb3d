"""Fetch: URL sources over HTTP(S), reduced to their main text, kept as snapshots in the store.

Everything that comes back is untrusted. The rules:
- only http and https; at most `max_redirects` hops, each one checked like the first;
- the host is resolved here and every address it resolves to is checked against the IANA IPv4
  and IPv6 special-purpose registries (`BLOCKED`: loopback, private, shared address space,
  link-local where cloud metadata lives, IETF protocol assignments, documentation, benchmarking,
  multicast, reserved; IPv4 addresses inside IPv6 — mapped, NAT64, 6to4 — are checked as IPv4),
  listed explicitly because `ipaddress`'s flags miss some (192.0.0.192, Oracle Cloud's metadata,
  is "global" to Python 3.11); refused unless `[fetch] allow_private` (tests allow loopback with
  `allow_loopback`); the connection then goes to the checked address (no second lookup that
  could answer otherwise), with the original name for the Host header and TLS (SNI and
  certificate check); a malformed URL or redirect is a one-line error;
- connect and read timeouts, a wall-clock deadline and a size cap; the content type must be HTML,
  plain text or PDF; a body that does not decode as its declared charset is decoded as UTF-8 or
  Windows-1252 with a warning;
- HTML is reduced to its main text by trafilatura (the best-scoring open-source main-content
  extractor in published comparisons, maintained, no network of its own); PDF text by pypdf;
- URLs are logged without credentials or query strings.

Each fetch is stored as a snapshot (URL, final URL, retrieval time, status, ETag/Last-Modified,
sha256 of the text). Later fetches revalidate with If-None-Match / If-Modified-Since; a 304 keeps
the snapshot. Offline, or when a fetch fails, the last snapshot is used (with a warning when it
failed); a source that never had a snapshot fails its item.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from pipeline.errors import SourceError
from pipeline.settings import FetchPolicy
from pipeline.store.snapshots import Snapshot, Snapshots
from pipeline.text import normalise, safe_url, utc_now

log = logging.getLogger("pipeline")

USER_AGENT = "comparison-pipeline/0.1 (+https://github.com/comparison-pipeline; source gathering)"
# Not globally reachable, from the IANA IPv4 and IPv6 Special-Purpose Address Registries
# (https://www.iana.org/assignments/iana-ipv4-special-registry, .../iana-ipv6-special-registry),
# plus multicast and the reserved 240/4. Loopback is kept apart so tests can allow it alone.
LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
        "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
        "::/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
TEXT_TYPES = {"text/html": "html", "application/xhtml+xml": "html", "text/plain": "text", "application/pdf": "pdf"}


def check_url(url: str) -> None:
    """A URL we may fetch: http(s), a host, a valid port; a malformed one is a one-line SourceError."""
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise SourceError(f"source URL {url[:80]!r} is malformed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise SourceError(f"source URL {safe_url(url)!r}: only http and https are fetched, not {parts.scheme!r}")
    if not host:
        raise SourceError(f"source URL {safe_url(url)!r} has no host")


class Fetcher:
    """Fetches URL sources once per process, through the store's snapshots."""

    def __init__(self, store: Snapshots, policy: FetchPolicy):
        self.store = store
        self.policy = policy
        self._memo: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def text(self, url: str, where: str) -> Snapshot:
        check_url(url)
        with self._lock:
            if url in self._memo:
                return self._memo[url]
        snapshot = self._snapshot(url, where)
        with self._lock:
            self._memo[url] = snapshot
        return snapshot

    def _snapshot(self, url: str, where: str) -> Snapshot:
        last = self.store.last_snapshot(url)
        if self.policy.offline:
            if last is None:
                raise SourceError(f"{where}: no stored snapshot of {safe_url(url)} to use offline; run once online")
            return last
        try:
            fresh = fetch(url, self.policy, last)
        except SourceError as exc:
            if last is None:
                raise SourceError(f"{where}: {exc} (and there is no earlier snapshot to fall back on)") from None
            log.warning("%s: %s; using the snapshot of %s", where, exc, last.fetched_at)
            return last
        if fresh is last:
            self.store.touch_snapshot(url, last.sha256)
            return last
        self.store.save_snapshot(fresh)
        return fresh


def fetch(url: str, policy: FetchPolicy, last: Snapshot | None = None) -> Snapshot:
    """One URL, with redirects followed by hand (each hop checked); `last` makes it conditional."""
    import httpx

    started = time.monotonic()
    headers = {"User-Agent": USER_AGENT, "Accept": "text/html, application/xhtml+xml, text/plain, application/pdf"}
    if last is not None:
        if last.etag:
            headers["If-None-Match"] = last.etag
        if last.last_modified:
            headers["If-Modified-Since"] = last.last_modified
    timeout = httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s)
    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(policy.max_redirects + 1):
            check_url(current)
            request_url, host_header, sni = _pinned(current, policy)
            extensions = {"sni_hostname": sni} if sni else {}
            try:
                with client.stream(
                    "GET", request_url, headers={**headers, "Host": host_header}, extensions=extensions
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        if not location:
                            raise SourceError(f"{safe_url(current)} redirects without a Location")
                        try:
                            current = urljoin(current, location)
                        except ValueError:
                            raise SourceError(f"{safe_url(current)} redirects to a malformed URL") from None
                        continue
                    if response.status_code == 304 and last is not None:
                        return last
                    if response.status_code != 200:
                        raise SourceError(f"{safe_url(current)} answered HTTP {response.status_code}")
                    body = _read_capped(response, policy, started, current)
                    return _snapshot_of(url, current, response, body)
            except httpx.TimeoutException:
                raise SourceError(f"{safe_url(current)} did not answer in time") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise SourceError(f"cannot fetch {safe_url(current)} ({type(exc).__name__})") from None
    raise SourceError(f"{safe_url(url)}: more than {policy.max_redirects} redirects")


def _pinned(url: str, policy: FetchPolicy) -> tuple[str, str, str]:
    """The URL with its host replaced by a checked address; the Host header; the TLS name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(f"cannot resolve {host!r} ({exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise SourceError(f"{host!r} resolves to no address")
    for address in addresses:
        _check_address(host, address, policy)
    ip = ipaddress.ip_address(addresses[0].split("%")[0])
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    return pinned, host_header, host if parts.scheme == "https" else ""


def blocked(address: str) -> str:
    """Why an address may not be fetched from ("loopback", "special-purpose"), or "" when it is public."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    if any(ip in net for net in LOOPBACK if net.version == ip.version):
        return "loopback"
    if any(ip in net for net in BLOCKED if net.version == ip.version):
        return "special-purpose"
    return ""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16)
    or IPv4-compatible (::a.b.c.d) IPv6 address."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in ipaddress.ip_network("64:ff9b::/96") or (int(ip) >> 32 == 0 and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    return None


def _check_address(host: str, address: str, policy: FetchPolicy) -> None:
    reason = blocked(address)
    if not reason or policy.allow_private or (reason == "loopback" and policy.allow_loopback):
        return
    if reason == "loopback":
        raise SourceError(f"{host!r} resolves to a loopback address ({address}); refused")
    raise SourceError(
        f"{host!r} resolves to a private, link-local or other special-purpose address ({address}); refused "
        "(set [fetch] allow_private = true to fetch from internal hosts)"
    )


def _read_capped(response: Any, policy: FetchPolicy, started: float, url: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise SourceError(f"{safe_url(url)} is {int(declared)} bytes, over the {policy.max_bytes}-byte cap")
    kind = _kind(response.headers.get("content-type", ""))
    if kind is None:
        ctype = response.headers.get("content-type", "none")
        raise SourceError(f"{safe_url(url)} is {ctype.split(';')[0]!r}; only HTML, plain text and PDF are read")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:
            raise SourceError(f"{safe_url(url)} is over the {policy.max_bytes}-byte cap")
        if time.monotonic() - started > policy.deadline_s:
            raise SourceError(f"{safe_url(url)} took longer than {policy.deadline_s:g} s")
        chunks.append(chunk)
    return b"".join(chunks)


def _kind(content_type: str) -> str | None:
    return TEXT_TYPES.get(content_type.split(";")[0].strip().lower())


def _snapshot_of(url: str, final: str, response: Any, body: bytes) -> Snapshot:

    ctype = response.headers.get("content-type", "")
    kind = _kind(ctype)
    if kind == "pdf":
        text = _pdf_text(body, final)
    else:
        decoded = _decode(body, response.charset_encoding, final)
        text = _html_text(decoded, final) if kind == "html" else decoded
    text = normalise(text)
    if not text:
        raise SourceError(f"{safe_url(final)} has no readable text")
    return Snapshot(
        url=url,
        final_url=safe_url(final),
        fetched_at=utc_now(),
        status=response.status_code,
        etag=response.headers.get("etag", ""),
        last_modified=response.headers.get("last-modified", ""),
        content_type=ctype.split(";")[0].strip().lower(),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text=text,
    )


def _decode(body: bytes, declared: str | None, url: str) -> str:
    for encoding in filter(None, (declared, "utf-8")):
        try:
            return body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    log.warning("%s does not decode as %s; read as Windows-1252", safe_url(url), declared or "UTF-8")
    return body.decode("cp1252", errors="replace")


def _html_text(html: str, url: str) -> str:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_precision=True)
    if not text:
        raise SourceError(f"{safe_url(url)}: no main text found in the page")
    return str(text)


def _pdf_text(body: bytes, url: str) -> str:
    import io

    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise SourceError(f"{safe_url(url)} is a PDF and pypdf is not installed; pip install pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(body))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise SourceError(f"{safe_url(url)} is a PDF that cannot be read ({type(exc).__name__})") from None
