#!/usr/bin/env bash
# check_tracker_imports.sh: the shared-memory tracker's process calls nothing
# but syscall(2) (lib/os/shm_tracker_child.cpp says why: anything else may be
# a sanitizer's or a preloaded library's, and hang in a clone of a
# multi-threaded program). A compiler can add calls the source never wrote
# (a struct's zeroing as memset, a loop as memcpy), so this reads what the
# built object imports.
#
#   tools/check_tracker_imports.sh LIBMPROC
#
# LIBMPROC is the built library; a static archive is read member by member.
# A shared library has no members to single out: the check is skipped
# (exit 77, which ctest reports as skipped).
set -euo pipefail
lib=$1
allowed='^(syscall|__errno_location)$'
case "$lib" in
    *.a) ;;
    *) echo "check_tracker_imports: $lib is not a static archive; skipped"; exit 77 ;;
esac
imports=$(nm -u "$lib" | sed -n '/^shm_tracker_child\.cpp\.o:$/,/^$/p' | awk 'NF == 2 && $1 == "U" {print $2}')
if [ -z "$imports" ]; then
    echo "check_tracker_imports: no shm_tracker_child.cpp.o in $lib" >&2
    exit 1
fi
bad=$(printf '%s\n' "$imports" | sed 's/@.*//' | grep -Ev "$allowed" || true)
if [ -n "$bad" ]; then
    echo "check_tracker_imports: the tracker's process calls more than syscall(2):" >&2
    printf '  %s\n' $bad >&2
    exit 1
fi
echo "check_tracker_imports: the tracker's process imports only: $(echo $imports)"
