"""Where the Maven-resolved jars are: `.jars/spark` for Spark, `.jars/kafka` for the local broker.

`make jars` (Maven, from `infra/spark/pom.xml` and `infra/kafka/pom.xml`) fills these folders once. Set
`LAKEPIPE_JARS_DIR` to use another folder holding `spark/` and `kafka/`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.errors import JarsMissingError, JavaNotFoundError

PROJECT_DIR = Path(__file__).resolve().parents[2]


def jars_root() -> Path:
    return Path(os.environ.get("LAKEPIPE_JARS_DIR") or PROJECT_DIR / ".jars")


def jar_files(kind: str) -> list[Path]:
    """The jars of one set (`spark` or `kafka`), sorted; an empty or missing folder is an error."""
    folder = jars_root() / kind
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    if not jars:
        if (PROJECT_DIR / "infra" / kind / "pom.xml").is_file():  # a clone of the repository
            raise JarsMissingError(f"no {kind} jars in {folder}: run `make jars` (resolves them with Maven from infra/{kind}/pom.xml)")
        raise JarsMissingError(f"no {kind} jars in {folder}: set LAKEPIPE_JARS_DIR to a folder whose {kind}/ holds them "
                               "(a clone of lakepipe resolves them with `make jars`)")  # fmt: skip
    return jars


def local_fs_jar() -> Path | None:
    """The jar of lakepipe's local file system without child processes (infra/localfs, compiled by `make jars`
    when a JDK's javac is there), or None."""
    jar = jars_root() / "localfs" / "lakepipe-localfs.jar"
    return jar if jar.is_file() else None


def java_executable() -> str:
    """The `java` to run: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(
            "java not found: install a Java 17 runtime (e.g. `apt-get install openjdk-17-jre-headless`) "
            "or set JAVA_HOME to a JDK 17"
        )
    return found
