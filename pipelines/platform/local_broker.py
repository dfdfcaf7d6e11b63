"""The local Kafka broker: one KRaft node (broker + controller) in its own JVM, from Maven Central jars.

`lakepipe up` formats storage on first start, starts the JVM detached, and waits until it answers;
`lakepipe down` stops it with SIGTERM (a clean shutdown), then SIGKILL if it hangs. State (data, logs,
pid file) lives under `local_broker.state_dir` (default `.lakepipe/kafka`, git-ignored).
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.errors import BrokerError, ConfigError, PortInUseError
from pipelines.model.config import KafkaSettings, Settings
from pipelines.platform import local_tls
from pipelines.platform.jars import PROJECT_DIR, jar_files, java_executable
from pipelines.platform.kafka_admin import admin, is_reachable
from pipelines.platform.processes import port_busy, terminate
from pipelines.platform.processes import running_pid as running_pid_of


@dataclass(frozen=True)
class BrokerPaths:
    state: Path

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def properties(self) -> Path:
        return self.state / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.state / "broker.pid"

    @property
    def log(self) -> Path:
        return self.state / "broker.log"

    @property
    def console(self) -> Path:
        return self.state / "console.log"


def paths(settings: Settings) -> BrokerPaths:
    return BrokerPaths(Path(settings.resolve(settings.local_broker.state_dir)))


def bootstrap(settings: Settings) -> str:
    b = settings.local_broker
    return f"{b.host}:{b.port}"


def running_pid(settings: Settings) -> int | None:
    """The pid of the broker this folder started, if that process is still alive."""
    return running_pid_of(paths(settings).pid_file, "kafka.Kafka")


def start(settings: Settings, timeout: float = 90.0) -> str:
    """Start the broker unless it already runs; returns a one-line status message."""
    b = settings.local_broker
    local = KafkaSettings(bootstrap_servers=bootstrap(settings))
    pid = running_pid(settings)
    if pid is not None:
        if _wait_reachable(local, timeout):
            secured = _secure(settings, local, timeout) if _secure_listener_running(settings) else ""
            return f"Kafka broker already running at {bootstrap(settings)}{secured} (pid {pid}); reusing it"
        raise BrokerError(f"the broker process {pid} runs but does not answer: run `lakepipe down` then `lakepipe up`")
    if port_busy(b.host, b.port):
        if is_reachable(local, timeout=3):
            return f"a Kafka broker already answers at {bootstrap(settings)} (not started from here); reusing it"
        raise PortInUseError(_busy_message(settings, b.port, "local_broker.port"))
    if port_busy(b.host, b.controller_port):
        raise PortInUseError(_busy_message(settings, b.controller_port, "local_broker.controller_port"))

    if b.sasl_ssl_port is not None and port_busy(b.host, b.sasl_ssl_port):
        raise PortInUseError(_busy_message(settings, b.sasl_ssl_port, "local_broker.sasl_ssl_port"))
    java = java_executable()
    classpath = os.pathsep.join(str(j) for j in jar_files("kafka"))
    p = paths(settings)
    p.data.mkdir(parents=True, exist_ok=True)
    _render_properties(settings, p)
    if not (p.data / "meta.properties").exists():
        _format_storage(java, classpath, p)

    log4j = PROJECT_DIR / "infra" / "kafka" / "log4j2.properties"
    cmd = [
        java, f"-Xmx{b.heap}", f"-Xms{b.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.file={p.log}",
        "-cp", classpath, "kafka.Kafka", str(p.properties),
    ]  # fmt: skip
    with open(p.console, "ab") as console:
        proc = subprocess.Popen(
            cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    p.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            p.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"the broker exited at start ({_last_error(p)}); full log: {p.log}")
        if is_reachable(local, timeout=1):
            secured = _secure(settings, local, timeout=deadline - time.monotonic())
            return f"Kafka broker started at {bootstrap(settings)}{secured} (pid {proc.pid}, data in {p.data})"
        time.sleep(0.5)
    terminate(proc.pid, grace=10)
    p.pid_file.unlink(missing_ok=True)
    raise BrokerError(f"the broker did not answer within {timeout:g}s; see {p.log}")


def stop(settings: Settings, timeout: float = 30.0) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "Kafka broker is not running (nothing to stop)"
    terminate(pid, grace=timeout)
    paths(settings).pid_file.unlink(missing_ok=True)
    return f"Kafka broker stopped (pid {pid})"


def status(settings: Settings) -> str:
    pid = running_pid(settings)
    local = KafkaSettings(bootstrap_servers=bootstrap(settings))
    if pid is None:
        return f"Kafka broker is not running (start it with `lakepipe up`); state in {paths(settings).state}"
    answers = "answering" if is_reachable(local, timeout=3) else "NOT answering"
    return f"Kafka broker running at {bootstrap(settings)} (pid {pid}), {answers}"


def _render_properties(settings: Settings, p: BrokerPaths) -> None:
    b = settings.local_broker
    template = (PROJECT_DIR / "infra" / "kafka" / "server.properties").read_text()
    advertised = "localhost" if b.host in ("127.0.0.1", "0.0.0.0") else b.host
    secure = {"secure_listener": "", "secure_advertised": "", "secure_settings": ""}
    if b.sasl_ssl_port is not None:
        mechanism = _scram_mechanism(settings)
        tls = local_tls.ensure(p.state / "tls", b.host)
        module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        secure = {
            "secure_listener": f",SASL_SSL://{b.host}:{b.sasl_ssl_port}",
            "secure_advertised": f",SASL_SSL://{advertised}:{b.sasl_ssl_port}",
            "secure_settings": "\n# The SASL_SSL listener (local_broker.sasl_ssl_port): SCRAM over TLS, the CA in tls/ca.pem.\n"
            f"sasl.enabled.mechanisms={mechanism}\n"
            f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config={module}\n"
            f"ssl.keystore.type=PKCS12\nssl.keystore.location={tls.keystore}\n"
            f"ssl.keystore.password={tls.password()}\nssl.key.password={tls.password()}\n",
        }
    p.properties.touch(mode=0o600)  # it holds the key store's password
    p.properties.write_text(
        template.format(
            host=b.host, port=b.port, controller_port=b.controller_port,
            advertised_host=advertised, log_dir=p.data, **secure,
        )  # fmt: skip
    )


def _scram_mechanism(settings: Settings) -> str:
    sec = settings.kafka.security
    if sec is None or not sec.mechanism.startswith("SCRAM-"):
        raise ConfigError(
            f"{settings.source}: local_broker.sasl_ssl_port needs kafka.security with a SCRAM mechanism (username, "
            "password, mechanism SCRAM-SHA-512 or SCRAM-SHA-256): the local broker accepts that user"
        )
    return sec.mechanism


def _secure_listener_running(settings: Settings) -> bool:
    b = settings.local_broker
    return b.sasl_ssl_port is not None and port_busy(b.host, b.sasl_ssl_port)


def _secure(settings: Settings, local: KafkaSettings, timeout: float) -> str:
    """Give kafka.security's user its SCRAM credential (through the plain loopback listener; a changed password
    replaces the old one) and wait until the SASL_SSL listener lets it in; the words for the start message."""
    b = settings.local_broker
    if b.sasl_ssl_port is None:
        return ""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    sec = settings.kafka.security
    mechanism = _scram_mechanism(settings)
    upsert = UserScramCredentialUpsertion(
        sec.username, ScramCredentialInfo(getattr(ScramMechanism, mechanism.replace("-", "_")), 8192),
        sec.password.encode(),
    )  # fmt: skip
    client = admin(local)  # kept referenced until the futures end (a collected client fails them)
    for future in client.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    ca = paths(settings).state / "tls" / "ca.pem"
    secured = KafkaSettings(bootstrap_servers=f"{b.host}:{b.sasl_ssl_port}", security=replace(sec, ca_file=str(ca)))
    if not _wait_reachable(secured, max(timeout, 10)):
        raise BrokerError(f"the broker's SASL_SSL listener on port {b.sasl_ssl_port} does not let user "
                          f"'{sec.username}' in; see {paths(settings).log}")  # fmt: skip
    return f" and SASL_SSL {b.host}:{b.sasl_ssl_port} ({mechanism}, user '{sec.username}', CA {ca})"


def cluster_id() -> str:
    """A new KRaft cluster id: a random UUID in URL-safe base64, as Kafka's own `Uuid.randomUuid` makes them,
    never starting with '-' (1 in 64 would, and the storage tool then reads it as an option and fails)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def _format_storage(java: str, classpath: str, p: BrokerPaths) -> None:
    cmd = [
        java, "-Xmx256m", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
        "-t", cluster_id(), "-c", str(p.properties), "--ignore-formatted",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise BrokerError(f"formatting broker storage in {p.data} failed: {detail[-1] if detail else res.returncode}")


def _wait_reachable(kafka: KafkaSettings, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_reachable(kafka, timeout=1):
            return True
        time.sleep(0.5)
    return False


def _busy_message(settings: Settings, port: int, key: str) -> str:
    return (
        f"port {port} on {settings.local_broker.host} is held by another program that is not a Kafka broker: "
        f"stop it, or set {key} (and kafka.bootstrap_servers) in {settings.source}"
    )


def _last_error(p: BrokerPaths) -> str:
    for f in (p.console, p.log):
        if f.exists():
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if "ERROR" in ln or "Exception" in ln]
            if lines:
                return lines[-1].strip()[:300]
    return "no error line in the logs"
