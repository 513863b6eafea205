#!/usr/bin/env bash
# Install the Debian packages a target needs, only when missing. Needs root (or passwordless
# sudo) to install; without it, says exactly what is missing and fails.
set -euo pipefail

case "${1:-test}" in
  gettext) packages=(gettext) ;;
  run) packages=(gettext postgresql-15-partman libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk) ;;
  # poppler-utils: pdftotext reads bill PDFs in tests, pdftoppm turns them into screenshots.
  test) packages=(gettext postgresql-15-partman chromium fonts-noto-cjk mosquitto libpango-1.0-0
                  libpangoft2-1.0-0 poppler-utils) ;;
  bench) packages=(wrk) ;;  # the web benchmark's load generator (scripts/bench_web.py)
  *) echo "usage: $0 [gettext|run|test|bench]" >&2; exit 2 ;;
esac

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "Missing Debian packages: ${missing[*]}. Install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
