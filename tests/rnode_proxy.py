"""A reverse proxy that does what Open OnDemand's `rnode` does (Debian's nginx): HTTPS with a
self-signed certificate, `/rnode/<host>/<port>/...` passed to http://<host>:<port>/... with
the prefix stripped, WebSocket upgrades passed through, and only the nodes it is told of
(OnDemand's host_regex)."""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devkit.processes import free_port
from orchestrator.tls import CertInfo, self_signed

CONFIG = """
daemon off;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
  # The nodes this portal proxies to, by name (nginx resolves a proxied name at run time
  # through DNS only, so their addresses are spelled out as the portal's resolver gives them).
  map $rnode_host $rnode_address {{ default ""; {nodes} }}
  server {{
    listen {address}:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location ~ ^/rnode/(?<rnode_host>[^/]+)/(?<rnode_port>[0-9]+)(?<rnode_path>/.*)?$ {{
      if ($rnode_address = "") {{ return 404; }}
      proxy_pass http://$rnode_address:$rnode_port$rnode_path$is_args$args;
      proxy_http_version 1.1;
      proxy_set_header Host $rnode_host:$rnode_port;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
      proxy_buffering off;
    }}
  }}
}}
"""


def require_nginx() -> str:
    """Debian's nginx: a failure as root (tests/ood/install.sh installs it), else a skip."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is not None:
        return nginx
    if os.geteuid() == 0:
        pytest.fail("no nginx although root: tests/ood/install.sh installs it (ruby and nginx from Debian)")
    pytest.skip("no nginx here and not root (tests/ood/install.sh installs it)")


@dataclass
class RnodeProxy:
    """The running proxy: the portal's address and port, and its certificate."""

    address: str
    port: int
    cert: CertInfo

    def url(self, host: str, port: int, rest: str = "") -> str:
        """https://portal/rnode/<host>/<port>/<rest>, as OnDemand links a session."""
        return f"https://{self.address}:{self.port}/rnode/{host}/{port}/{rest}"


@contextlib.contextmanager
def rnode_proxy(workdir: Path, address: str, nodes: dict[str, str]) -> Iterator[RnodeProxy]:
    """nginx on `address` (a free port) proxying /rnode/ to `nodes` (name -> address)."""
    nginx = require_nginx()
    workdir.mkdir(parents=True, exist_ok=True)
    cert = self_signed(workdir / "tls", [address])
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(
        CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",  # its workers write under workdir
            dir=workdir,
            nodes=" ".join(f'"{name}" {ip};' for name, ip in nodes.items()),
            address=address,
            port=port,
            cert=cert.cert,
            key=cert.key,
        )
    )
    log = (workdir / "nginx.out").open("w")
    process = subprocess.Popen(
        [nginx, "-c", str(config), "-p", str(workdir), "-e", str(workdir / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    trust = ssl.create_default_context(cafile=cert.cert)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"https://{address}:{port}/", verify=trust, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    errors = (workdir / "error.log").read_text()
                    raise AssertionError(f"nginx did not start: {errors}") from None
                time.sleep(0.1)
        yield RnodeProxy(address, port, cert)
    finally:
        process.terminate()
        process.wait(10)
        log.close()
