"""A job's checkout: the tarball unpacked safely (top folder stripped, nothing outside the
tree, size and count caps) and the diff the command's edits make."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from app.api.checkout import CheckoutError, prepare_trees, tree_diff


def _tarball(path: Path, entries: list[tuple[str, bytes | None, str | None]]) -> Path:
    """``(name, data, link target)``: a file, or a symlink when ``data`` is None."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, target in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, target or ""
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_the_top_folder_is_stripped_and_the_work_copy_is_separate(tmp_path: Path) -> None:
    archive = _tarball(
        tmp_path / "a.tar.gz",
        [
            ("octo-demo-abc1234/README.md", b"hi\n", None),
            ("octo-demo-abc1234/src/x.py", b"x\n", None),
        ],
    )
    pristine, work = tmp_path / "p", tmp_path / "w"
    prepare_trees(archive, pristine, work, max_bytes=1000)
    assert (pristine / "README.md").read_text() == "hi\n"
    (work / "README.md").write_text("changed\n")
    assert (pristine / "README.md").read_text() == "hi\n"


@pytest.mark.parametrize(
    "entries",
    [
        [("top/../../escape.txt", b"x", None)],
        [("top/link", None, "/etc/passwd")],
        [("top/link", None, "../../outside")],
    ],
)
def test_nothing_lands_outside_the_tree(
    tmp_path: Path, entries: list[tuple[str, bytes | None, str | None]]
) -> None:
    archive = _tarball(tmp_path / "a.tar.gz", entries)
    with pytest.raises(CheckoutError, match="could not be unpacked"):
        prepare_trees(archive, tmp_path / "p", tmp_path / "w", max_bytes=1000)
    assert not (tmp_path / "escape.txt").exists()


def test_an_archive_over_the_cap_is_refused(tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "a.tar.gz", [("top/big", b"x" * 2000, None)])
    with pytest.raises(CheckoutError, match="more than 1000 bytes"):
        prepare_trees(archive, tmp_path / "p", tmp_path / "w", max_bytes=1000)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(CheckoutError):
        prepare_trees(tmp_path / "junk.tar.gz", tmp_path / "p2", tmp_path / "w2", max_bytes=10)


def test_the_diff_shows_edits_new_deleted_binary_and_linked_files(tmp_path: Path) -> None:
    before, after = tmp_path / "a", tmp_path / "b"
    for root in (before, after):
        (root / "src").mkdir(parents=True)
        (root / "same.txt").write_text("same\n")
        (root / ".git").mkdir()
    (before / "src/edit.py").write_text("one\ntwo\n")
    (after / "src/edit.py").write_text("one\n2")
    (after / "new.txt").write_text("fresh\n")
    (before / "gone.txt").write_text("bye\n")
    (before / "blob.bin").write_bytes(b"\0\1")
    (after / "blob.bin").write_bytes(b"\0\2")
    os.symlink("same.txt", after / "alias")
    (after / ".git" / "index").write_bytes(b"noise")

    diff = tree_diff(before, after, max_bytes=100_000)
    assert diff == (
        "diff --git a/alias b/alias\nnew file mode 100644\n--- /dev/null\n+++ b/alias\n"
        "@@ -0,0 +1 @@\n+-> same.txt\n\\ No newline at end of file\n"
        "diff --git a/blob.bin b/blob.bin\nBinary files a/blob.bin and b/blob.bin differ\n"
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n"
        "@@ -0,0 +1 @@\n+fresh\n"
        "diff --git a/src/edit.py b/src/edit.py\n--- a/src/edit.py\n+++ b/src/edit.py\n"
        "@@ -1,2 +1,2 @@\n one\n-two\n+2\n\\ No newline at end of file\n"
    )
    assert tree_diff(before, after, max_bytes=200).endswith(
        "[the diff is cut here: it is longer than 200 bytes]\n"
    )
