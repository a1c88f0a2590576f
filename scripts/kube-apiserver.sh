#!/usr/bin/env bash
# Build (once per machine) a real kube-apiserver for the Kubernetes-mode tests.
#
# No prebuilt kube-apiserver is reachable from this machine's registries, but
# Debian's `kubernetes` *source* package holds the upstream v1.20.2 tree with
# every dependency vendored, and it builds offline with Debian's Go:
#   1. fetch the source with a private apt sources file and lists dir (the
#      system's apt configuration is untouched: deb-src is not enabled there);
#   2. replace the vendored modern-go/reflect2 1.0.1 with Debian's 1.0.2 (the
#      old one segfaults under Go >= 1.18 when a custom object is created);
#   3. make WHAT=cmd/kube-apiserver (~6 min on 2 cores, ~1.3 GB RAM).
# The binary is cached as $CAPSTAN_KUBE_CACHE/kube-apiserver-v1.20.2
# (default ~/.cache/capstan); a later run finds it and exits at once.
# Prints the binary's path on stdout. Also installs etcd-server (the tests
# run their own etcd on 127.0.0.1), openssl (test PKI), curl and kubectl.
set -euo pipefail

version=v1.20.2
cache="${CAPSTAN_KUBE_CACHE:-$HOME/.cache/capstan}"
bin="$cache/kube-apiserver-$version"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(); fi
fi
apt_install() {
    local need=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] && [ ${#sudo[@]} -eq 0 ]; then
        echo "kube-apiserver: need root (or passwordless sudo) to apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "kube-apiserver: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2 || {
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >&2
    }
}

mkdir -p "$cache"
# One build at a time per machine (tests may call this concurrently).
exec 9>"$cache/.kube-apiserver.lock"
flock 9

apt_install etcd-server openssl curl
# kubectl: any recent one works for apply/get; Debian's kubernetes-client if none.
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

apt_install golang-go rsync golang-github-modern-go-reflect2-dev ca-certificates
work="$(mktemp -d "${TMPDIR:-/tmp}/capstan-kube-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "kube-apiserver: building $version from Debian's kubernetes source package in $work (~6 min, once per machine)" >&2
mkdir -p "$work/lists/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$work/lists")
apt-get "${apt_opts[@]}" update >&2
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only kubernetes >&2)
orig=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
[ -f "$orig" ] || { echo "kube-apiserver: the kubernetes source package did not download" >&2; exit 1; }
mkdir -p "$work/src"
tar -xzf "$orig" -C "$work/src" --strip-components=1
cd "$work/src"
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. vendor/github.com/modern-go/reflect2/
find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete
export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
make WHAT=cmd/kube-apiserver KUBE_GIT_VERSION="$version" >&2
built=$(find _output -type f -name kube-apiserver -perm -u+x | head -n1)
[ -x "$built" ] || { echo "kube-apiserver: the build produced no binary" >&2; exit 1; }
mkdir -p "$cache"
cp "$built" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
echo "$bin"
