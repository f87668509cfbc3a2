"""One JSON rule for request bodies and bundle manifests (SPEC Appendix B.3–B.4, C.1.2)."""

from __future__ import annotations

from typing import Any

import pytest

from app.bundles.scanner import check_manifest
from app.domain.json_limits import content_problem, parse_strict
from app.domain.manifest import UploadCheck
from app.http.body import parse_json
from app.http.errors import ApiError

REFUSED = [
    (b"{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b'{"a": NaN}', "NaN is not a valid JSON value"),
    (b'{"a": -1e999}', "number out of range: -1e999"),
    (b'{"a": [9007199254740993]}', "integer out of range: 9007199254740993"),
    (b'{"a": "x\\u0000y"}', "NUL characters (\\u0000) are not supported"),
    (b'{"a": {"\\ud800": 1}}', "unpaired UTF-16 surrogates are not supported"),
    (b"[" * 513 + b"]" * 513, "nesting deeper than 512 levels"),
    (b"[" * 5000 + b"]" * 5000, "nesting deeper than 512 levels"),
]


def _nowhere(source: str) -> UploadCheck:
    return UploadCheck(inside=True, absolute_path=source, exists=True)


@pytest.mark.parametrize(("data", "detail"), REFUSED)
def test_a_body_and_a_manifest_are_refused_with_the_same_detail(data: bytes, detail: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_strict(data)
    assert str(raised.value) == detail
    with pytest.raises(ApiError) as refused:
        parse_json(data)
    assert refused.value.message == f"invalid JSON: {detail}"
    assert check_manifest(data, _nowhere) == (None, [f"manifest.json is not valid JSON: {detail}"])


@pytest.mark.parametrize(
    "value",
    [{"a": ["b", {"c": 1.5}]}, "plain", ["\u00e9\U0001f600"], [[[]]]],
)
def test_content_within_the_limits_has_no_problem(value: Any) -> None:
    assert content_problem(value) is None


def test_depth_counts_levels_from_one() -> None:
    nested: Any = []
    for _ in range(511):
        nested = [nested]
    assert content_problem(nested) is None  # 512 levels
    assert content_problem([nested]) == "nesting deeper than 512 levels"
