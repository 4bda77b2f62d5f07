#!/usr/bin/env bash
# Test set-up beyond the venv: the browser test needs Debian's chromium + chromedriver (installed once, as root).
set -u
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "test-setup: could not install chromium; the browser test will be skipped"
  else
    echo "test-setup: chromium/chromedriver missing and not root; the browser test will be skipped"
  fi
fi
exit 0
