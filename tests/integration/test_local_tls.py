"""The local broker's TLS material, made by the JDK's real keytool."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipelines.platform import local_tls
from pipelines.platform.jars import java_executable


def test_a_password_that_looks_like_a_jvm_option_makes_a_working_key_store_and_never_reaches_the_command_line(
    tmp_path, monkeypatch
):
    """CI once failed with `ClassNotFoundException: tiA3dTa81...`: one random password in 4,096 starts with `-J`,
    which the JDK's launcher passes to the JVM as an option when it stands among keytool's arguments."""
    password = "-JtiA3dTa81xrg57tEuMTQU7UPUNnERA"
    monkeypatch.setattr(local_tls.secrets, "token_urlsafe", lambda n: password)
    seen: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args, **kwargs):
        seen.append(list(args))
        return real_run(args, **kwargs)

    monkeypatch.setattr(local_tls.subprocess, "run", recording_run)
    tls = local_tls.ensure(tmp_path / "tls", "broker.example")

    assert tls.password() == password
    assert len(seen) == 7 and not [a for a in seen if any(password in arg for arg in a)]
    assert tls.ca_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")
    listing = _list(tls.keystore, password)
    assert "Alias name: broker" in listing and "Alias name: ca" in listing
    assert "Issuer: CN=lakepipe local CA" in listing
    assert "DNSName: broker.example" in listing and "DNSName: localhost" in listing
    assert {oct(f.stat().st_mode & 0o777) for f in tls.folder.iterdir()} == {"0o600"}


def _list(keystore: Path, password: str) -> str:
    keytool = str(Path(java_executable()).resolve().with_name("keytool"))
    res = subprocess.run([keytool, "-list", "-v", "-keystore", str(keystore), "-storepass:env", "PW"],
                         capture_output=True, text=True, env={**os.environ, "PW": password}, check=True)  # fmt: skip
    return res.stdout
