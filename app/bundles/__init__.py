"""Bundles on disk (SPEC §9, Appendix C.2): directories and zip archives, with no database.

- `scanner.py`: bundle directories read and judged; `fingerprint.py`: one SHA-256 per version;
- `archive.py`: an uploaded zip read safely, stored and extracted; `uploads.py`: an upload judged
  exactly as a scanned bundle;
- `cache.py`: this node's extracted uploaded versions; `upkeep.py`: that cache kept bounded and
  free of leftovers.

What is recorded about a bundle (its stream and row) is written by `app/service/bundle_commands.py`.
"""
