#!/usr/bin/env bash
# test_install.sh - libcnn as another program sees it: `make install DESTDIR=... PREFIX=/usr`
# installs every piece, both examples build against that tree alone through pkg-config and
# run correctly, they load the libcnn.so inside it, the shared library exports exactly the
# functions cnn.h declares, the man page is clean, and `make uninstall` removes it all.
# Runs in the normal suite (BUILD=build); the sanitizer suites build other objects.
set -u
cd "$(dirname "$0")/.."
build=${BUILD:-build}
if [ "$build" != build ]; then
    echo "test_install: runs with the normal build only (BUILD=$build): skipped here"
    exit 0
fi
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ok() { echo "ok: $*"; }
tmp=$(mktemp -d /tmp/cnn_install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/root

make -s install DESTDIR="$dest" PREFIX=/usr > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; bad "make install"; exit 1; }
version=$(sed -n 's/^#define CNN_VERSION_STRING "\(.*\)"/\1/p' include/cnn.h)
major=${version%%.*}
for f in usr/bin/mnist usr/lib/libcnn.a "usr/lib/libcnn.so.$version" usr/include/cnn.h \
         usr/lib/pkgconfig/libcnn.pc usr/share/man/man1/mnist.1; do
    [ -f "$dest/$f" ] && ok "installed $f" || bad "missing $f"
done
[ "$(readlink "$dest/usr/lib/libcnn.so.$major")" = "libcnn.so.$version" ] && ok "libcnn.so.$major -> libcnn.so.$version" || bad "soname link"
[ "$(readlink "$dest/usr/lib/libcnn.so")" = "libcnn.so.$major" ] && ok "libcnn.so -> libcnn.so.$major" || bad "dev link"
soname=$(readelf -d "$dest/usr/lib/libcnn.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libcnn.so.$major" ] && ok "soname $soname" || bad "soname is '$soname'"

# exported symbols == the functions cnn.h declares
nm -D --defined-only "$dest/usr/lib/libcnn.so.$version" | awk '$2 == "T" {print $3}' | sort > "$tmp/exported"
tr '\n' ' ' < include/cnn.h | grep -o 'CNN_API [^;{]*(' | sed 's/($//; s/.*[ *]//' | sort > "$tmp/declared"
if cmp -s "$tmp/exported" "$tmp/declared"; then
    ok "libcnn.so exports exactly the $(wc -l < "$tmp/declared") functions of cnn.h"
else
    bad "exports differ from cnn.h:"; diff "$tmp/declared" "$tmp/exported" | head -20
fi
[ "$(wc -l < "$tmp/declared")" -gt 50 ] || bad "too few declarations found in cnn.h"

# pkg-config against the installed tree only
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$dest/usr/lib/pkgconfig
flags=$(pkg-config --cflags --libs libcnn) || bad "pkg-config libcnn"
[ "$(pkg-config --modversion libcnn)" = "$version" ] && ok "pkg-config version $version" || bad "pkg-config version"
case "$flags" in *"$dest/usr/include"*"$dest/usr/lib"*|*"$dest/usr/lib"*"$dest/usr/include"*) ok "pkg-config: $flags" ;; *) bad "pkg-config flags '$flags' do not point into $dest" ;; esac
mkdir -p "$tmp/ex"
cp examples/classify.c examples/train_tiny.c "$tmp/ex/"   # away from the repository's include/
for ex in classify train_tiny; do
    # -nostdinc is too much; instead nothing but the installed tree is on the include path
    (cd "$tmp/ex" && cc -std=c11 -Wall -Wextra -Werror "$ex.c" $flags -o "$ex") > "$tmp/cc.log" 2>&1 \
        && ok "built examples/$ex.c" || { cat "$tmp/cc.log"; bad "build $ex"; }
done
export LD_LIBRARY_PATH=$dest/usr/lib
if [ -x "$tmp/ex/classify" ]; then
    lib=$(ldd "$tmp/ex/classify" | awk '/libcnn\.so/ {print $3}')
    case "$lib" in "$dest"/*) ok "classify loads $lib" ;; *) bad "classify loads libcnn from '$lib'" ;; esac
fi
# train_tiny trains, saves a model and scores >= 90% on the test set; classify reads it back
if [ -x "$tmp/ex/train_tiny" ]; then
    "$tmp/ex/train_tiny" data/mnist "$tmp/tiny.model" > "$tmp/train.out" 2>&1 && ok "train_tiny: $(tail -1 "$tmp/train.out")" || { cat "$tmp/train.out"; bad "train_tiny"; }
fi
if [ -x "$tmp/ex/classify" ] && [ -f "$tmp/tiny.model" ]; then
    out=$("$tmp/ex/classify" "$tmp/tiny.model" examples/digit-drawn-3.png 2>&1)
    case "$out" in *": 3 ("*"libcnn $version"*) ok "classify: $out" ;; *) bad "classify said '$out'" ;; esac
    out=$("$tmp/ex/classify" "$tmp/tiny.model" /nonexistent.png 2>&1) && bad "classify of a missing file succeeded" || ok "classify of a missing file: $out"
fi

# the man page
if command -v mandoc > /dev/null; then
    lint=$(mandoc -Tlint man/mnist.1 2>&1)
    [ -z "$lint" ] && ok "mandoc -Tlint man/mnist.1 is clean" || bad "mandoc -Tlint: $lint"
else
    bad "mandoc is not installed (scripts/deps installs it)"
fi

make -s uninstall DESTDIR="$dest" PREFIX=/usr > /dev/null 2>&1 || bad "make uninstall"
left=$(find "$dest" -type f -o -type l | wc -l)
[ "$left" -eq 0 ] && ok "uninstall removed every file" || { bad "uninstall left $left files"; find "$dest" -type f -o -type l; }
[ $fail -eq 0 ] && echo "test_install: all passed" || echo "test_install: FAILED"
exit $fail
