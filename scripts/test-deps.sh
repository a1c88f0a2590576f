#!/usr/bin/env bash
# Install the real servers the tests run against, from Debian's packages, if
# they are missing: an OCI registry (docker-registry), htpasswd
# (apache2-utils) for its basic-auth variant, git (git http-backend serves
# the git-clone tests), OpenSSH's sshd (the ssh tests), rsync (the
# remote-shell benchmark's baseline), and for the git-clone transport
# tests openssl (a private CA), stunnel4 (TLS in front of the git server)
# and tinyproxy (an HTTP proxy), and for container steps podman with runc
# (the Docker Engine API; runc because crun cannot run on a hybrid cgroup
# host) and mmdebstrap (test images from Debian packages). Tests start and
# stop their own
# instances on 127.0.0.1 with temp dirs; nothing here starts a service.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
{ command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ]; } || need+=(git)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v tinyproxy >/dev/null 2>&1 || need+=(tinyproxy)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
# podman's init process for `Init: true` (a Recommends, which --no-install-recommends skips).
[ -x /usr/bin/catatonit ] || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# The web UI's browser tests: headless Chromium, its WebDriver (the two
# packages must be the same version) and a font to render text with.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0

echo "test-deps: installing ${need[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "test-deps: need root (or passwordless sudo) to apt-get install ${need[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Package installs must not start system services (the tests run their own).
"${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2 || {
    "${sudo[@]}" apt-get update >&2
    "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2
}
