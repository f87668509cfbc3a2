"""Uploading a bundle zip from the console's Run page (SPEC C.2) and running the uploaded version."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.console.browser import Recorder, job_id_of, new_page, open_console
from tests.runtime.processes import ROOT, NodeProcess


def zipped_bundle(tmp_path: Path, graph_id: str) -> Path:
    """The research_flow bundle under a new graph id, as a zip with one top-level directory."""
    folder = tmp_path / graph_id
    shutil.copytree(ROOT / "examples" / "research_flow", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graph_id"] = graph_id
    (folder / "manifest.json").write_text(json.dumps(manifest))
    archive = tmp_path / f"{graph_id}.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, path.relative_to(tmp_path).as_posix())
    return archive


async def test_upload_a_bundle_zip_and_run_it(
    browser: Browser, node: NodeProcess, recorder: Recorder, tmp_path: Path
) -> None:
    archive = zipped_bundle(tmp_path, "uploaded_flow")
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("this is not a zip archive")
    context, page = await new_page(browser, recorder)
    try:
        await open_console(page, node)
        await page.get_by_role("link", name="Run", exact=True).click()
        upload = page.get_by_role("region", name="A bundle zip")

        await upload.get_by_label("Bundle archive (.zip)").set_input_files(str(not_a_zip))
        await upload.get_by_role("button", name="Upload").click()
        await expect(upload.get_by_role("alert")).to_contain_text("bundle is not a zip archive")

        await upload.get_by_label("Bundle archive (.zip)").set_input_files(str(archive))
        await upload.get_by_role("button", name="Upload").click()
        answer = upload.locator('[data-upload="uploaded_flow"]')
        await expect(answer).to_contain_text("stored as a new version")
        await expect(answer).to_contain_text("upload:uploaded_flow@")
        await recorder.shot(page, "run-uploaded")
        await answer.get_by_role("button", name="Run this version").click()
        await page.wait_for_url(re.compile(r"#/jobs/"))
        await expect(page.locator(".job-head .status")).to_have_text("completed", timeout=60_000)
        await expect(page.locator(".job-head")).to_contain_text("uploaded_flow")
        status, details = node.request("GET", f"/api/v1/jobs/{job_id_of(page)}")
        assert status == 200 and details["job"]["bundle"]["bundle_id"] == "uploaded_flow"

        await page.get_by_role("link", name="Bundles", exact=True).click()
        await expect(page.locator('[data-bundle-id="uploaded_flow"]')).to_contain_text(
            "upload:uploaded_flow@"
        )
        recorder.assert_clean({400, 401})
    finally:
        await context.close()
