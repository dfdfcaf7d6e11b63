"""TLS material for the local broker's SASL_SSL listener, made with the JDK's own `keytool` (no openssl needed):
a CA of the project's own, and the broker's key pair with a certificate it signed for localhost and the
broker's host. Clients trust the CA's PEM file (`kafka.security.ca_file`). Made once per broker state folder;
the key stores' password is random, kept beside them, readable by the owner only."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import BrokerError
from pipelines.platform.jars import java_executable

_PASSWORD_VAR = "LAKEPIPE_KEYSTORE_PASSWORD"


@dataclass(frozen=True)
class BrokerTls:
    folder: Path

    @property
    def ca_pem(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def password_file(self) -> Path:
        return self.folder / "keystore.password"

    def password(self) -> str:
        return self.password_file.read_text().strip()


def ensure(folder: Path, host: str) -> BrokerTls:
    """The CA and the broker's key store under `folder`, made now unless both are there."""
    tls = BrokerTls(folder)
    if tls.ca_pem.is_file() and tls.keystore.is_file() and tls.password_file.is_file():
        return tls
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for old in folder.iterdir():  # a half-made set from an interrupted start
        old.unlink()
    password = secrets.token_urlsafe(24)
    tls.password_file.touch(mode=0o600)
    tls.password_file.write_text(password)
    names = ["dns:localhost", "ip:127.0.0.1"] + ([f"{'ip' if _is_ip(host) else 'dns'}:{host}"]
                                                  if host not in ("localhost", "127.0.0.1", "0.0.0.0") else [])  # fmt: skip
    ca, csr, cert = folder / "ca.p12", folder / "broker.csr", folder / "broker.pem"
    storepass = ["-storepass:env", _PASSWORD_VAR]
    store = ["-storetype", "PKCS12", *storepass, "-keypass:env", _PASSWORD_VAR]
    new_key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", "3650"]
    keytool = functools.partial(_keytool, password=password)
    keytool("-genkeypair", "-alias", "ca", "-dname", "CN=lakepipe local CA", *new_key, "-ext", "bc:c",
            "-keystore", str(ca), *store)  # fmt: skip
    keytool("-exportcert", "-alias", "ca", "-keystore", str(ca), *storepass, "-rfc", "-file", str(tls.ca_pem))
    keytool("-genkeypair", "-alias", "broker", "-dname", "CN=localhost", *new_key, "-keystore", str(tls.keystore), *store)
    keytool("-certreq", "-alias", "broker", "-keystore", str(tls.keystore), *storepass, "-file", str(csr))
    keytool("-gencert", "-alias", "ca", "-keystore", str(ca), *storepass, "-infile", str(csr),
            "-outfile", str(cert), "-rfc", "-validity", "3650", "-ext", "SAN=" + ",".join(names),
            "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth")  # fmt: skip
    keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(tls.ca_pem), "-keystore", str(tls.keystore),
            *storepass)  # fmt: skip
    keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(cert), "-keystore", str(tls.keystore),
            *storepass)  # fmt: skip
    csr.unlink()
    for f in folder.iterdir():
        os.chmod(f, 0o600)
    return tls


def _keytool(*args: str, password: str) -> None:
    """Runs keytool with the key stores' password in its environment, never among its arguments: other users
    would see it in the process list, and the JDK's launcher would take one starting with `-J` as a JVM option."""
    keytool = str(Path(java_executable()).resolve().with_name("keytool"))
    env = {**os.environ, _PASSWORD_VAR: password}
    res = subprocess.run([keytool, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise BrokerError(f"making the broker's TLS certificates with keytool failed ({args[0]}): "
                          f"{detail[-1] if detail else res.returncode}")  # fmt: skip


def _is_ip(host: str) -> bool:
    return all(part.isdigit() for part in host.split(".")) and host.count(".") == 3
