#!/usr/bin/env bash
# Installs what rendering Brax videos needs beyond PyPI: an OpenGL platform for
# MuJoCo's renderer. On a CPU machine that is OSMesa (Debian's libosmesa6); a
# GPU machine or Colab renders with EGL instead. Best effort: without it,
# training works and Brax runs save an HTML viewer instead of an mp4.
set -u
if ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing libosmesa6 (software OpenGL for Brax videos)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null) \
    || echo "warning: could not install libosmesa6; Brax videos will fall back to the HTML viewer"
else
  echo "note: for Brax videos on a CPU machine install libosmesa6 (sudo apt-get install libosmesa6)"
fi
exit 0
