"""lakepipe's local file system (infra/localfs): Hadoop's, with Java's file API where Hadoop starts a process.

The whole suite runs on it (every local session gets it); these tests pin the calls it replaces, on real files.
"""

from __future__ import annotations

import os
import stat

import pytest

from pipelines.platform.jars import local_fs_jar
from pipelines.platform.session import LOCAL_FS_CONF


@pytest.fixture(scope="module")
def jvm_fs(spark):
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    return jvm, jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf), conf


def test_local_sessions_use_it(spark, jvm_fs):
    assert local_fs_jar() is not None, "make jars compiles infra/localfs when javac is there (it is, here)"
    jvm, fs, conf = jvm_fs
    assert fs.getClass().getName() == LOCAL_FS_CONF["spark.hadoop.fs.file.impl"]
    assert fs.getRawFileSystem().getClass().getName() == "io.lakepipe.fs.NioRawLocalFileSystem"
    context = jvm.org.apache.hadoop.fs.FileContext.getLocalFSFileContext(conf)
    assert context.getDefaultFileSystem().getClass().getName() == LOCAL_FS_CONF["spark.hadoop.fs.AbstractFileSystem.file.impl"]


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o750, 0o000])
def test_set_permission_sets_the_mode(jvm_fs, tmp_path, mode):
    jvm, fs, _ = jvm_fs
    f = tmp_path / "f"
    f.write_text("x")
    fs.setPermission(jvm.org.apache.hadoop.fs.Path(str(f)), jvm.org.apache.hadoop.fs.permission.FsPermission(mode))
    assert stat.S_IMODE(os.stat(f).st_mode) == mode


def test_created_files_get_the_umasked_default(jvm_fs, tmp_path):
    jvm, fs, _ = jvm_fs
    f = tmp_path / "created"
    fs.create(jvm.org.apache.hadoop.fs.Path(str(f)), True).close()
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644  # Hadoop's 666 less its default umask 022
    assert (tmp_path / ".created.crc").is_file(), "still the checksummed file system"


def test_link_status_tells_files_directories_and_links_apart(jvm_fs, tmp_path):
    jvm, fs, _ = jvm_fs
    path = jvm.org.apache.hadoop.fs.Path
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    raw = fs.getRawFileSystem()
    plain = raw.getFileLinkStatus(path(str(tmp_path / "file")))
    assert (plain.isFile(), plain.isSymlink(), plain.getLen()) == (True, False, 5)
    assert raw.getFileLinkStatus(path(str(tmp_path / "dir"))).isDirectory()
    link = raw.getFileLinkStatus(path(str(tmp_path / "link")))
    assert link.isSymlink() and link.getSymlink().toUri().getPath() == str(tmp_path / "file")
    with pytest.raises(Exception, match="FileNotFoundException"):
        raw.getFileLinkStatus(path(str(tmp_path / "missing")))


def test_file_context_rename_keeps_its_no_overwrite_contract(jvm_fs, tmp_path):
    """Delta's log store commits a version by a rename that must fail when the version exists."""
    jvm, _, conf = jvm_fs
    path = jvm.org.apache.hadoop.fs.Path
    context = jvm.org.apache.hadoop.fs.FileContext.getLocalFSFileContext(conf)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    (tmp_path / "c").write_text("c")
    none = jvm.org.apache.hadoop.fs.Options.Rename.NONE
    rename_opts = jvm.java.lang.reflect.Array.newInstance(none.getClass(), 1)
    rename_opts[0] = none
    with pytest.raises(Exception, match="FileAlreadyExistsException"):
        context.rename(path(str(tmp_path / "a")), path(str(tmp_path / "b")), rename_opts)
    context.rename(path(str(tmp_path / "a")), path(str(tmp_path / "moved")), rename_opts)
    assert (tmp_path / "moved").read_text() == "a" and not (tmp_path / "a").exists()
