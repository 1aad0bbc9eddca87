#!/usr/bin/env bash
# Run HERE (the build machine), not on the GPU machine: copies the build
# dependencies the GPU machine's image lacks (Criterion, liburing, LMDB,
# zstd, xxHash: headers, shared libraries with their closure, pkg-config
# files) into .devdeps/, which git ignores, so scripts/device_check.sh can
# build there with no package registry. Carry it: run with carry [".devdeps"].
set -euo pipefail
cd "$(dirname "$0")/.."
D=.devdeps
rm -rf "$D"
mkdir -p "$D/include" "$D/lib/pkgconfig"
ex="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.devdeps/' "$ex" 2>/dev/null || echo '/.devdeps/' >>"$ex"
ML=/usr/lib/x86_64-linux-gnu
cp -r /usr/include/criterion "$D/include/"
cp -r /usr/include/liburing /usr/include/liburing.h /usr/include/lmdb.h \
  /usr/include/zstd.h /usr/include/zstd_errors.h /usr/include/zdict.h \
  /usr/include/xxhash.h /usr/include/xxh3.h "$D/include/"
# The libraries and everything they load, except the C library itself.
libs="$ML/libcriterion.so $ML/liburing.so $ML/liblmdb.so $ML/libzstd.so $ML/libxxhash.so"
for l in $libs; do
  cp -L "$l" "$D/lib/"
  real=$(readlink -f "$l")
  soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
  cp -L "$l" "$D/lib/$soname"
  ldd "$real" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name path; do
    case "$name" in libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|ld-linux*) continue;; esac
    cp -L "$path" "$D/lib/$name"
  done
done
pc() { # name lib version
  cat >"$D/lib/pkgconfig/$1.pc" <<PC
prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
libdir=\${prefix}/lib
Name: $1
Description: $1, bundled by scripts/device_bundle.sh
Version: $3
Libs: -L\${libdir} -l$2
Cflags: -I\${includedir}
PC
}
pc criterion criterion "$(pkg-config --modversion criterion)"
pc liburing uring "$(pkg-config --modversion liburing)"
pc lmdb lmdb "$(pkg-config --modversion lmdb)"
pc libzstd zstd "$(pkg-config --modversion libzstd)"
pc libxxhash xxhash "$(pkg-config --modversion libxxhash)"
# pkg-config itself, in case the GPU machine has none (a wrapper that finds
# its library).
mkdir -p "$D/bin"
mkdir -p "$D/pkgconf"
cp -L "$(readlink -f "$(command -v pkg-config)")" "$D/pkgconf/pkgconf"
cp -L "$(ldd "$D/pkgconf/pkgconf" | awk '/libpkgconf/ {print $3}')" "$D/pkgconf/"
cat >"$D/bin/pkg-config" <<'SH'
#!/bin/sh
d=$(dirname "$(readlink -f "$0")")/../pkgconf
LD_LIBRARY_PATH="$d" exec "$d/pkgconf" "$@"
SH
chmod +x "$D/bin/pkg-config"
echo "device_bundle: $(du -sh "$D" | cut -f1) in $D (carry it to the GPU machine)"
