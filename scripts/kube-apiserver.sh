#!/usr/bin/env bash
# Build (once per machine) the Kubernetes binaries the Kubernetes-mode tests
# run: kube-apiserver, and for the tests on a real node kubelet,
# kube-scheduler and kube-controller-manager.
#
#   scripts/kube-apiserver.sh                 the apiserver only
#   scripts/kube-apiserver.sh --node          all four
#
# No prebuilt Kubernetes binary is reachable from this machine's registries,
# but Debian's `kubernetes` *source* package holds the upstream v1.20.2 tree
# with every dependency vendored, and it builds offline with Debian's Go:
#   1. fetch the source with a private apt configuration whose deb-src
#      entries are the machine's own `deb` entries (the system's apt
#      configuration is untouched, and no archive host is named here);
#   2. replace the vendored modern-go/reflect2 1.0.1 with Debian's 1.0.2 (the
#      old one segfaults under Go >= 1.18 when a custom object is created);
#   3. one `make WHAT=...` for every missing binary (~6 min for the
#      apiserver alone, ~12 min for all four, on 2 cores; ~1.3 GB RAM).
# The binaries are cached as $CAPSTAN_KUBE_CACHE/NAME-v1.20.2 (default
# ~/.cache/capstan); a later run finds them and exits at once.
# Prints the apiserver's path on stdout (with --node: the cache directory).
# Also installs etcd-server (the tests run their own etcd on 127.0.0.1),
# openssl (test PKI), curl and kubectl, and with --node Debian's containerd
# (with runc and the CNI plugins) and gcc (the pause image is compiled from
# the same tree).
set -euo pipefail

version=v1.20.2
cache="${CAPSTAN_KUBE_CACHE:-$HOME/.cache/capstan}"
bin="$cache/kube-apiserver-$version"
wanted=(kube-apiserver)
node=false
if [ "${1:-}" = "--node" ]; then
    node=true
    wanted+=(kubelet kube-scheduler kube-controller-manager)
fi

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
"$node" && apt_install containerd runc containernetworking-plugins gcc libc6-dev
done_msg() { if "$node"; then echo "$cache"; else echo "$bin"; fi; }
missing=()
for b in "${wanted[@]}"; do
    [ -x "$cache/$b-$version" ] || missing+=("$b")
done
# The pause image's source comes with a build.
if "$node" && [ ! -f "$cache/pause-$version.c" ] && [ ${#missing[@]} -eq 0 ]; then
    missing+=(kubelet)
fi
if [ ${#missing[@]} -eq 0 ]; then
    done_msg
    exit 0
fi

apt_install golang-go rsync golang-github-modern-go-reflect2-dev ca-certificates
work="$(mktemp -d "${TMPDIR:-/tmp}/capstan-kube-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "kube-apiserver: building ${missing[*]} $version from Debian's kubernetes source package in $work (once per machine)" >&2
mkdir -p "$work/lists/partial" "$work/parts"
# deb-src twins of the machine's own Debian sources (one-line and deb822).
: >"$work/sources.list"
if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >>"$work/sources.list"
fi
for f in /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^deb \(.*\)$/deb-src \1/p' "$f" >>"$work/sources.list"
done
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types:.*$/Types: deb-src/' "$f" >"$work/parts/$(basename "$f")"
done
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts" -o "Dir::State::Lists=$work/lists")
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
what=()
for b in "${missing[@]}"; do what+=("cmd/$b"); done
make WHAT="${what[*]}" KUBE_GIT_VERSION="$version" >&2
for b in "${missing[@]}"; do
    built=$(find _output -type f -name "$b" -perm -u+x | head -n1)
    [ -x "$built" ] || { echo "kube-apiserver: the build produced no $b" >&2; exit 1; }
    cp "$built" "$cache/$b-$version.tmp"
    mv -f "$cache/$b-$version.tmp" "$cache/$b-$version"
done
if "$node" && [ ! -f "$cache/pause-$version.c" ]; then
    cp build/pause/linux/pause.c "$cache/pause-$version.c.tmp"
    mv -f "$cache/pause-$version.c.tmp" "$cache/pause-$version.c"
fi
done_msg
