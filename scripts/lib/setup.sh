# Shared by ./scripts/demo, ./scripts/test, ./scripts/bench and ./scripts/package: make this
# checkout runnable on a fresh Debian/Ubuntu machine, idempotently, and fast the second time.
# Sourced, not run: it leaves the venv activated for the caller.

set -euo pipefail
FOOTFALL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$FOOTFALL_ROOT/.venv"

log() { printf 'footfall-setup: %s\n' "$*" >&2; }

# The OS packages footfall's demo and tests use, keyed by a command that proves each is there.
need_os_packages() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  command -v git >/dev/null 2>&1 || missing+=(git)
  for extra in "$@"; do
    case "$extra" in
      faketime) [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(faketime) ;;
      dpkg-deb) command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg) ;;
      *) command -v "$extra" >/dev/null 2>&1 || missing+=("$extra") ;;
    esac
  done
  if ((${#missing[@]})); then
    log "installing OS packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian packages start their own services; footfall runs private instances instead.
    $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
}

# A venv under the repo with footfall installed editable; reinstalled only when pyproject.toml changes.
need_venv() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.footfall-installed"
  local want
  want="$(sha256sum "$FOOTFALL_ROOT/pyproject.toml" | cut -d' ' -f1) $extras"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python dependencies ($extras)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$FOOTFALL_ROOT[$extras]" 2>&1 \
      | { grep -v -e '^WARNING: Location' -e 'is ignored' || true; }
    echo "$want" >"$stamp"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
}
