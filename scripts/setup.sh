#!/usr/bin/env bash
# Set up a development environment: find Python >= 3.12, create .venv, install opinionmap[dev].
# Usage: ./scripts/setup.sh   (or: make setup)
set -euo pipefail
cd "$(dirname "$0")/.."

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidates=()
    [ -n "${OPINIONMAP_PYTHON:-}" ] && candidates+=("$OPINIONMAP_PYTHON")
    candidates+=(python3.13 python3.12 python3)
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root=$(pyenv root)
        # newest first: 3.13.x before 3.12.x
        while IFS= read -r p; do candidates+=("$p"); done < <(ls -d "$root"/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -rV)
    elif [ -d "$HOME/.pyenv/versions" ]; then
        while IFS= read -r p; do candidates+=("$p"); done < <(ls -d "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -rV)
    fi
    for c in "${candidates[@]}"; do
        if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if [ -x .venv/bin/python ] && python_ok .venv/bin/python; then
    PY=.venv/bin/python
    echo "setup: reusing .venv ($(.venv/bin/python --version))"
else
    if ! BASE=$(find_python); then
        echo "setup: no Python >= 3.12 found (tried python3.13, python3.12, python3 and pyenv versions)." >&2
        echo "       Install one (e.g. 'pyenv install 3.12') or set OPINIONMAP_PYTHON=/path/to/python3.12." >&2
        exit 1
    fi
    echo "setup: creating .venv with $BASE ($("$BASE" --version))"
    rm -rf .venv
    "$BASE" -m venv .venv
    PY=.venv/bin/python
fi

"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -e ".[dev]"
echo "setup: done. Activate with 'source .venv/bin/activate' or use .venv/bin/opinionmap"
