"""docker/nginx/region.conf.template run by this machine's nginx, as the nginx image renders it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_certs(certs: Path, region: str = "430400") -> None:
    """docker/make-certs.sh: a private CA and ``region``'s certificate in ``certs``."""
    made = subprocess.run(
        ["sh", str(ROOT / "docker" / "make-certs.sh"), str(certs), region], capture_output=True
    )
    assert made.returncode == 0, made.stderr


#: The template's cap on a partner's federation requests in flight from one address.
FEDERATION_CAP = "limit_conn tongban_federation 1024;"


def nginx_config(
    tmp: Path,
    certs: Path,
    port: int,
    http_port: int,
    replicas: list[int],
    *,
    federation_cap: int | None = None,
) -> Path:
    """docker/nginx/region.conf.template for region 430400 as the nginx image renders it, with
    the replicas and ports of this test (and `http2 on` dropped on nginx before 1.25);
    ``federation_cap``: another cap on federation requests from one address than the
    template's (a test cannot hold a thousand requests open cheaply)."""
    template = ROOT / "docker" / "nginx" / "region.conf.template"
    text = template.read_text(encoding="utf-8").replace("${REGION}", "430400")
    if federation_cap is not None:
        assert FEDERATION_CAP in text
        text = text.replace(FEDERATION_CAP, f"limit_conn tongban_federation {federation_cap};")
    for name, replica in zip(("a", "b"), replicas, strict=True):
        text = text.replace(f"node-430400-{name}:8400", f"127.0.0.1:{replica}")
    text = text.replace("/etc/nginx/certs/", f"{certs}/")
    text = text.replace("/var/log/nginx/access.log", f"{tmp}/access.log")
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    major, minor = (int(x) for x in version.split("/")[1].split(".")[:2])
    if (major, minor) < (1, 25):
        text = text.replace("    http2 on;\n", "")
    (tmp / "conf.d").mkdir(parents=True)
    (tmp / "conf.d" / "region.conf").write_text(text, encoding="utf-8")
    main = tmp / "nginx.conf"
    main.write_text(main_config(tmp), encoding="utf-8")
    return main


def main_config(tmp: Path) -> str:
    """docker/nginx/nginx.conf as this machine's nginx runs it in the foreground as the
    test's user, with its files in ``tmp`` and the system's mime.types."""
    text = (ROOT / "docker" / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    replacements = {
        "user  nginx;\n": "daemon off;\n",
        "/var/log/nginx/error.log notice": "stderr warn",
        "/var/run/nginx.pid": f"{tmp}/nginx.pid",
        "/etc/nginx/conf.d/*.conf": f"{tmp}/conf.d/*.conf",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text
