"""Debian's nginx as a child process on a free port, serving the shipped front-door config over TLS.

The config is deploy/nginx/giftwheel.conf.template rendered with deploy/nginx/giftwheel.env, the
listen address, the upstream and a throwaway self-signed certificate replaced; everything else
(limits, timeouts, headers) is what a deployment runs.
"""

from __future__ import annotations

import re
import ssl
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path

from devstack.ports import free_port
from devstack.processes import LocalServer, installed

NGINX_DIR = Path(__file__).resolve().parents[1] / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "giftwheel.conf.template"
DEFAULTS = NGINX_DIR / "giftwheel.env"
TLS_HOST = "localhost"

# The main context a distribution's nginx.conf gives; the shipped file is one http-block include.
_MAIN = """\
pid {prefix}/nginx.pid;
error_log stderr info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/giftwheel.conf;
}}
"""


class NginxError(RuntimeError):
    pass


def template_defaults() -> dict[str, str]:
    """The values deploy/nginx/giftwheel.env renders the template with (KEY=VALUE lines)."""
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", DEFAULTS.read_text(), re.M)
    return dict(pairs)


def render(values: Mapping[str, str]) -> str:
    """The template with every ``${NAME}`` replaced; a name without a value is an error."""
    template = string.Template(TEMPLATE.read_text())
    missing = sorted(set(template.get_identifiers()) - set(values))
    # nginx's own variables ($host...) are lower case; ours are the upper-case names.
    missing = [name for name in missing if name.isupper()]
    if missing:
        raise NginxError(f"no value for {', '.join(missing)} in the nginx template")
    return template.safe_substitute(values)


def self_signed_certificate(directory: Path, host: str = TLS_HOST) -> tuple[Path, Path]:
    """A one-day certificate for host and 127.0.0.1 (openssl, as Debian ships it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class NginxServer(LocalServer):
    """nginx on 127.0.0.1 in front of ``upstream`` (host:port), TLS on ``port``.

    ``overrides`` replace values of giftwheel.env (a test shortens the client timeouts with them).
    """

    error = NginxError

    def __init__(self, upstream: str, *, overrides: Mapping[str, str] | None = None) -> None:
        super().__init__("nginx")
        # nginx run as root drops its workers to nobody, which must reach the temp paths.
        self.workdir.chmod(0o755)
        self.cert, key = self_signed_certificate(self.workdir)
        self.values = {
            **template_defaults(),
            "NGINX_SERVER_NAME": TLS_HOST,
            "NGINX_HTTPS_LISTEN": f"{self.host}:{self.port}",
            "NGINX_HTTP_LISTEN": f"{self.host}:{free_port()}",
            "NGINX_TLS_CERT": str(self.cert),
            "NGINX_TLS_KEY": str(key),
            "NGINX_ACME_ROOT": str(self.workdir / "acme"),
            "NGINX_API_UPSTREAM": upstream,
            **(overrides or {}),
        }

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def config_text(self) -> str:
        """The rendered giftwheel.conf nginx runs."""
        return (self.workdir / "giftwheel.conf").read_text()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate and nothing else."""
        return ssl.create_default_context(cafile=str(self.cert))

    def command(self) -> list[str]:
        (self.workdir / "giftwheel.conf").write_text(render(self.values))
        (self.workdir / "acme").mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(_MAIN.format(prefix=self.workdir))
        # Debian installs it outside a user's PATH
        nginx = installed("nginx", NginxError, also=Path("/usr/sbin/nginx"))
        return [nginx, "-p", str(self.workdir), "-c", str(conf), "-g", "daemon off;"]
