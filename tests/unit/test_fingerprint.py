"""Bundle fingerprint (SPEC §9.3) against a digest computed independently with hashlib."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from app.bundles.fingerprint import fingerprint

MANIFEST = b'{"graph_id": "fp_test", "manifest_version": "1.0"}\n'


def _tree(root: Path) -> Path:
    (root / "payloads" / "scripts" / "nested").mkdir(parents=True)
    (root / "payloads" / "empty_dir").mkdir()
    (root / "payloads" / ".hidden_dir").mkdir()
    (root / "manifest.json").write_bytes(MANIFEST)
    (root / "payloads" / "b.txt").write_bytes(b"bee")
    (root / "payloads" / "a.txt").write_bytes(b"ay")
    (root / "payloads" / "scripts" / "run.py").write_bytes(b"print('hi')\n")
    (root / "payloads" / "scripts" / "nested" / "deep.bin").write_bytes(bytes(range(256)))
    (root / "payloads" / ".env").write_bytes(b"SECRET=1")
    (root / "payloads" / "scripts" / ".cache").write_bytes(b"ignored")
    (root / "payloads" / ".hidden_dir" / "inside.txt").write_bytes(b"ignored too")
    return root


def _expected(entries: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    digest.update(b"manifest.json" + MANIFEST)
    for relative, content in sorted(entries, key=lambda entry: entry[0].encode("utf-8")):
        digest.update(relative.encode("utf-8") + content)
    return digest.hexdigest()


def test_digest_covers_manifest_and_visible_payload_files_in_byte_order(tmp_path: Path) -> None:
    bundle = _tree(tmp_path / "bundle")

    digest, payload_files = fingerprint(bundle)

    assert payload_files == ["a.txt", "b.txt", "scripts/nested/deep.bin", "scripts/run.py"]
    assert digest == _expected(
        [
            ("a.txt", b"ay"),
            ("b.txt", b"bee"),
            ("scripts/run.py", b"print('hi')\n"),
            ("scripts/nested/deep.bin", bytes(range(256))),
        ]
    )


def test_upper_case_sorts_before_lower_case_in_utf8_byte_order(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "payloads").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(MANIFEST)
    for name in ("b", "a", "Z", "é"):
        (bundle / "payloads" / name).write_bytes(name.encode("utf-8"))

    _, payload_files = fingerprint(bundle)

    assert payload_files == ["Z", "a", "b", "é"]


def test_dot_files_and_empty_directories_do_not_change_the_digest(tmp_path: Path) -> None:
    bundle = _tree(tmp_path / "bundle")
    before, _ = fingerprint(bundle)

    (bundle / "payloads" / ".DS_Store").write_bytes(b"noise")
    (bundle / "payloads" / "another_empty" / "deeper").mkdir(parents=True)

    assert fingerprint(bundle)[0] == before


def test_renaming_or_editing_a_file_changes_the_digest(tmp_path: Path) -> None:
    bundle = _tree(tmp_path / "bundle")
    original, _ = fingerprint(bundle)

    (bundle / "payloads" / "a.txt").rename(bundle / "payloads" / "c.txt")
    renamed, renamed_files = fingerprint(bundle)
    (bundle / "payloads" / "c.txt").write_bytes(b"changed")
    edited, _ = fingerprint(bundle)

    assert "c.txt" in renamed_files
    assert len({original, renamed, edited}) == 3


def test_moving_a_file_between_directories_changes_the_digest(tmp_path: Path) -> None:
    bundle = _tree(tmp_path / "bundle")
    original, _ = fingerprint(bundle)

    (bundle / "payloads" / "a.txt").rename(bundle / "payloads" / "scripts" / "a.txt")

    assert fingerprint(bundle)[0] != original


def test_empty_payloads_hash_only_the_manifest(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "payloads").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(MANIFEST)

    assert fingerprint(bundle) == (_expected([]), [])


class _FailingHandle(io.BytesIO):
    """Yields some bytes, then fails like a disk error part-way through the file."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() == 0:
            return super().read(3)
        raise OSError(5, "Input/output error")


@pytest.mark.parametrize("failure", ["open", "read"])
def test_unreadable_file_contributes_only_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "payloads").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(MANIFEST)
    (bundle / "payloads" / "locked.txt").write_bytes(b"secret")
    (bundle / "payloads" / "open.txt").write_bytes(b"fine")
    real_open = Path.open

    def guarded_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name != "locked.txt":
            return real_open(self, *args, **kwargs)
        if failure == "open":
            raise PermissionError(13, "Permission denied", str(self))
        return _FailingHandle(b"secret")

    monkeypatch.setattr(Path, "open", guarded_open)

    assert fingerprint(bundle) == (
        _expected([("locked.txt", b""), ("open.txt", b"fine")]),
        ["locked.txt", "open.txt"],
    )


def test_symlinked_file_counts_and_symlinked_directory_is_not_entered(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_bytes(b"data")
    bundle = tmp_path / "bundle"
    (bundle / "payloads").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(MANIFEST)
    (bundle / "payloads" / "link.txt").symlink_to(outside / "data.txt")
    (bundle / "payloads" / "linked_dir").symlink_to(outside, target_is_directory=True)
    (bundle / "payloads" / "dangling").symlink_to(tmp_path / "nowhere")

    assert fingerprint(bundle) == (_expected([("link.txt", b"data")]), ["link.txt"])
