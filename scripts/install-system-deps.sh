#!/usr/bin/env bash
# Install the system programs FlowForge's local stack and tests use, from Debian's packages.
# As root: apt-get installs what is missing (apt-get update first). Otherwise: prints what to
# install and exits 1. Nothing is downloaded from anywhere but the configured Debian mirrors.
set -euo pipefail

# program-or-check  debian-package
checks=(
  "java:openjdk-17-jre-headless"
  "mvn:maven"
  "mosquitto:mosquitto"
  "mosquitto_pub:mosquitto-clients"
  "kcat:kcat"
  "wget:wget"
  "ffmpeg:ffmpeg"
  "gst-launch-1.0:gstreamer1.0-tools"
  "chromium:chromium"
  "chromedriver:chromium-driver"
)
# GStreamer RTSP server for the simulator: introspection data + plugins, used by /usr/bin/python3.
gst_packages=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav)

missing=()
for item in "${checks[@]}"; do
  prog=${item%%:*}; pkg=${item#*:}
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$prog" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done
for pkg in "${gst_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "FlowForge needs these Debian packages; install them as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's mosquitto package may start its own broker on 1883 through the init system; the
# local stack runs its own with FlowForge's config, so stop a packaged one that holds the port.
if command -v service >/dev/null 2>&1; then service mosquitto stop >/dev/null 2>&1 || true; fi
