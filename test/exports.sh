#!/usr/bin/env bash
# The library exports exactly the public API, each function under its symbol
# version: the functions declared in include/uvctx.h, the names listed in
# src/uvctx.map and the library's exports must be one set, so that a new
# function cannot be forgotten in the map (it would not be exported from the
# shared library: a link error for its first user) nor an internal one leak.
#
#   shared library  every symbol it defines in .dynsym is a function of the
#                   map, exported as name@@NODE with NODE the map's node for
#                   it, or one of the map's version nodes themselves;
#   static library  its global symbols of default visibility are the
#                   header's functions (the map does not apply to it, but the
#                   header's visibility attribute does).
#
# Which of the two the build made is read from libuvctx.la; both are checked
# when both were built. Run by make check from the build directory, or by
# hand: test/exports.sh [BUILDDIR]. Needs perl and readelf (binutils), both
# in build-essential. Closes with "N passed, M failed"; exits 1 if any check
# failed.
set -uo pipefail

top=${srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
build=${1:-$PWD}
header=$top/include/uvctx.h
map=$top/src/uvctx.map
la=$build/libuvctx.la
work=$(mktemp -d "${TMPDIR:-/tmp}/uvctx-exports.XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }

# same NAME A B WHAT-A WHAT-B: the sorted name lists A and B are equal; else
# says which names are on one side only.
same() {
  local name=$1 a=$2 b=$3 only_a only_b
  only_a=$(comm -23 "$a" "$b" | tr '\n' ' ')
  only_b=$(comm -13 "$a" "$b" | tr '\n' ' ')
  if [[ -z $only_a && -z $only_b ]]; then
    ok "$name ($(wc -l < "$a"))"
    return
  fi
  nok "$name"
  [[ -z $only_a ]] || echo "     only in $4: $only_a"
  [[ -z $only_b ]] || echo "     only in $5: $only_b"
}

# The functions the header declares, whatever the declaration looks like:
# comments and preprocessor lines (macros, including function-like macros
# over a function of the same name) are dropped, then every uvctx_ name
# followed by its parameter list is one, except pointer declarators such as
# the callback typedefs' (*uvctx_watch_cb)(...).
perl -e '
  local $/; $_ = <>;
  s{/\*.*?\*/}{ }gs;
  s{//[^\n]*}{}g;
  s{^[ \t]*#(?:[^\n]*\\\n)*[^\n]*}{}mg;
  s{\(\s*\*\s*\w+\s*\)}{(*)}g;
  print "$1\n" while /\b(uvctx_\w+)\s*\)?\s*\(/g;
' "$header" | sort -u > "$work/header"

# The map's names, each with its node: "name NODE" lines.
perl -e '
  local $/; $_ = <>;
  s{/\*.*?\*/}{ }gs;
  my $node = "";
  for my $tok (/(\w[\w.]*\s*\{|\}|\buvctx_\w+\s*;)/g) {
    if ($tok =~ /^([\w.]+)\s*\{/) { $node = $1 }
    elsif ($tok eq "}") { $node = "" }
    elsif ($tok =~ /^(\w+)/) { print "$1 $node\n" }
  }
' "$map" | sort > "$work/map-nodes"
cut -d' ' -f1 "$work/map-nodes" > "$work/map"
cut -d' ' -f2 "$work/map-nodes" | sort -u > "$work/nodes"

if [[ ! -s $work/header ]]; then
  nok "found no function in $header"
fi
dups=$(uniq -d "$work/map" | tr '\n' ' ')
if [[ -z $dups ]]; then
  ok "each function is in one node of the map"
else
  nok "in several nodes of the map: $dups"
fi
if grep -q ' $' "$work/map-nodes"; then
  nok "names outside any node of the map: $(grep ' $' "$work/map-nodes" | tr '\n' ' ')"
fi
sort -u -o "$work/map" "$work/map"
same "the header's functions are the map's" "$work/header" "$work/map" \
  include/uvctx.h src/uvctx.map

if [[ ! -f $la ]]; then
  nok "no $la: build the library first"
  echo "$pass passed, $fail failed"
  exit 1
fi
dlname=$(sed -n "s/^dlname='\(.*\)'$/\1/p" "$la")
old_library=$(sed -n "s/^old_library='\(.*\)'$/\1/p" "$la")

if [[ -n $dlname ]]; then
  so=$build/.libs/$dlname
  # Defined symbols: "NAME@@NODE" for a versioned function, and the version
  # nodes themselves as absolute symbols named after them.
  readelf --dyn-syms -W "$so" |
    awk 'NR > 3 && $1 ~ /^[0-9]+:$/ && $7 != "UND" { print $7, $8 }' \
      > "$work/dynsym"
  awk '$1 == "ABS" { print $2 }' "$work/dynsym" | sort -u > "$work/so-nodes"
  awk '$1 != "ABS" { print $2 }' "$work/dynsym" | sort > "$work/so-syms"
  same "the version nodes of $dlname are the map's" "$work/so-nodes" \
    "$work/nodes" "$dlname" src/uvctx.map
  sed 's/@.*//' "$work/so-syms" | sort -u > "$work/so"
  same "$dlname exports the map's functions and nothing else" "$work/so" \
    "$work/map" "$dlname" src/uvctx.map
  sed 's/ /@@/' "$work/map-nodes" | sort > "$work/map-versioned"
  same "$dlname exports each function under its node, as the default" \
    "$work/so-syms" "$work/map-versioned" "$dlname" src/uvctx.map
fi

if [[ -n $old_library ]]; then
  a=$build/.libs/$old_library
  readelf -s -W "$a" |
    awk '$1 ~ /^[0-9]+:$/ && $5 != "LOCAL" && $6 == "DEFAULT" && $7 != "UND" { print $8 }' |
    sort -u > "$work/a"
  same "$old_library's global symbols of default visibility are the header's functions" \
    "$work/a" "$work/header" "$old_library" include/uvctx.h
fi

if [[ -z $dlname && -z $old_library ]]; then
  nok "$la names neither a shared nor a static library"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
