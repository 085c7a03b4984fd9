"""cfssl as the peer of the PKI benchmark: a CA made with ``cfssl gencert -initca`` and ``cfssl serve``.

``CfsslPeer(workdir, "ecdsa", 256)`` writes the CA request and a signing
profile (server auth, 8760h), makes the CA, starts ``cfssl serve`` on a free
port of 127.0.0.1 with its output in ``<workdir>/cfssl.log``, and
:meth:`CfsslPeer.check` proves that ``sign`` and ``newcert`` answer
``"success": true`` before anything is measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import free_port, wait_http

SIGNING_CONFIG = {
    "signing": {
        "default": {
            "expiry": "8760h",
            "usages": ["signing", "digital signature", "key encipherment", "server auth"],
        }
    }
}


def newcert_body(common_name: str, algo: str, size: int) -> dict[str, object]:
    """The ``/api/v1/cfssl/newcert`` request: cfssl makes the key and signs it."""
    return {"request": {"CN": common_name, "hosts": [common_name], "key": {"algo": algo, "size": size}}}


class CfsslPeer:
    def __init__(self, workdir: Path, algo: str, size: int) -> None:
        if shutil.which("cfssl") is None:
            sys.exit("cfssl is required: apt-get install -y golang-cfssl")
        self.dir = workdir
        self.algo, self.size = algo, size
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> CfsslPeer:
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_csr = {
            "CN": f"cfssl bench {self.algo}-{self.size} CA",
            "key": {"algo": self.algo, "size": self.size},
            "names": [{"O": "strongroom bench"}],
        }
        (self.dir / "ca-csr.json").write_text(json.dumps(ca_csr))
        (self.dir / "config.json").write_text(json.dumps(SIGNING_CONFIG))
        made = subprocess.run(
            ["cfssl", "gencert", "-initca", str(self.dir / "ca-csr.json")],
            capture_output=True,
            text=True,
            check=True,
        )
        ca = json.loads(made.stdout)  # what cfssljson -bare would split into ca.pem / ca-key.pem
        (self.dir / "ca.pem").write_text(ca["cert"])
        (self.dir / "ca-key.pem").write_text(ca["key"])
        (self.dir / "ca-key.pem").chmod(0o600)
        port = free_port()
        log = open(self.dir / "cfssl.log", "wb")  # a line per request: never a terminal
        self.proc = subprocess.Popen(
            [
                "cfssl",
                "serve",
                "-address",
                "127.0.0.1",
                "-port",
                str(port),
                "-ca",
                str(self.dir / "ca.pem"),
                "-ca-key",
                str(self.dir / "ca-key.pem"),
                "-config",
                str(self.dir / "config.json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        wait_http(self.url + "/api/v1/cfssl/info")
        return self

    @property
    def ca_pem(self) -> str:
        return (self.dir / "ca.pem").read_text()

    def post(self, endpoint: str, body: dict[str, object]) -> dict[str, object]:
        """POST to ``/api/v1/cfssl/<endpoint>``; raise unless cfssl says ``"success": true``."""
        r = httpx.post(f"{self.url}/api/v1/cfssl/{endpoint}", json=body, timeout=30)
        data: dict[str, object] = r.json()
        if r.status_code != 200 or data.get("success") is not True:
            raise RuntimeError(f"cfssl {endpoint} failed ({r.status_code}): {r.text[:300]}")
        return data

    def check(self, csr_pem: str, common_name: str, key_algo: str, key_size: int) -> None:
        """Both measured calls work: a signed certificate from ``sign``, a key and one from ``newcert``."""
        signed: Any = self.post("sign", {"certificate_request": csr_pem})["result"]
        made: Any = self.post("newcert", newcert_body(common_name, key_algo, key_size))["result"]
        if "BEGIN CERTIFICATE" not in str(signed.get("certificate")):
            raise RuntimeError(f"cfssl sign returned no certificate: {signed}")
        if "BEGIN CERTIFICATE" not in str(made.get("certificate")) or "PRIVATE KEY" not in str(
            made.get("private_key")
        ):
            raise RuntimeError("cfssl newcert returned no certificate or key")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
