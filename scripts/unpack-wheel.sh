#!/usr/bin/env bash
# Downloads one wheel from PyPI (without its dependencies) and unpacks chosen members of it:
#   unpack-wheel.sh REQUIREMENT DEST MAP...
# MAP is PREFIX (members under PREFIX keep their path below DEST) or PREFIX=TARGET (the part of
# their path after PREFIX goes below DEST/TARGET; a member that is PREFIX itself becomes
# DEST/TARGET). DEST is emptied first. Used by the fetch-*.sh scripts for header-only packages.
set -euo pipefail
requirement=$1 dest=$2
shift 2
PY="${DITBENCH_PYTHON:-.venv/bin/python}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "unpack-wheel: $requirement"
"$PY" -m pip download --quiet --no-deps -d "$tmp" "$requirement"
rm -rf "$dest" && mkdir -p "$dest"
"$PY" - "$tmp" "$dest" "$@" <<'PYEOF'
import glob, os, shutil, sys, zipfile
src, dest, maps = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = glob.glob(os.path.join(src, "*.whl"))[0]
rules = [(m.split("=", 1)[0], m.split("=", 1)[1] if "=" in m else None) for m in maps]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith("/"):
            continue
        for prefix, target in rules:
            if not name.startswith(prefix):
                continue
            path = name if target is None else os.path.join(target, name[len(prefix):])
            out = os.path.normpath(os.path.join(dest, path))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as f, open(out, "wb") as o:
                shutil.copyfileobj(f, o)
            break
PYEOF
