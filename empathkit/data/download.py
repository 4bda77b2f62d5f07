"""``empathkit data download``: fetch the official EmpatheticDialogues archive (online users).

Offline it fails fast with a clear message instead of hanging (short connect timeout, no retries).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from empathkit.errors import ResourceMissing

ED_URL = "https://dl.fbaipublicfiles.com/parlai/empatheticdialogues/empatheticdialogues.tar.gz"


def download_ed(dest: str | Path, url: str = ED_URL, timeout: float = 15.0) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "empatheticdialogues.tar.gz"
    tmp = archive.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, tmp.open("wb") as f:  # noqa: S310 (fixed https URL)
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise ResourceMissing(f"could not download {url}: {getattr(e, 'reason', e)}. If you are offline, put the "
                              "official release folder (train/valid/test.csv) somewhere and pass it as data.source "
                              "or set EMPATHKIT_DATA.") from None
    tmp.rename(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (dest / "empatheticdialogues.sha256").write_text(sha + "\n")
    return dest / "empatheticdialogues"
