#!/usr/bin/env bash
# The layer check of `make lint` (docs/architecture.md "Layers"): every top-level module of
# src/ may import only the modules below it in LAYERS, so no import goes up and there is no
# import circle between top-level modules; `main.rs` imports only `cli`. Inside a module, no
# two of its files import each other, directly or in a circle (a file's parent `mod.rs` is
# not counted: children use their parent's items by design).
#
# It reads `crate::…` paths (`use` lines, grouped `use crate::{a, b::c}`, and inline paths)
# and `super::x` paths, with comments stripped. Exit 1 and one line per offending import
# (file, what it imports, why) when the code breaks the order; exit 2 when a top-level module
# is not in LAYERS (add it where it belongs).
#
#   bash scripts/layers.sh [SRC_DIR]      (default: src)

set -euo pipefail

# Bottom to top (docs/architecture.md "Layers"; src/lib.rs shows it top to bottom).
LAYERS="sort wire accept spawn logger crypto addr http mux dmsg transport router app rpc apps visor cli"

src=${1:-src}
[ -f "$src/lib.rs" ] || { echo "layers.sh: no $src/lib.rs" >&2; exit 2; }

# The top-level modules the crate declares.
mods=$(sed -n 's/^[[:space:]]*\(pub[^ ]* \)\{0,1\}mod \([a-z_0-9]*\);.*/\2/p' "$src/lib.rs" | sort -u)
rc=0
for m in $mods; do
    case " $LAYERS " in
    *" $m "*) ;;
    *)
        echo "layers.sh: src/lib.rs declares \`mod $m\`, which is not in LAYERS of $0; add it at its place in the order (and to docs/architecture.md \"Layers\")" >&2
        rc=2
        ;;
    esac
done
[ "$rc" = 0 ] || exit "$rc"

# src/lib.rs's diagram (top to bottom, one `//!  name/` line per layer) names the declared
# modules in this order.
want=$(for l in $LAYERS; do echo "$l"; done | grep -Fx -f <(echo "$mods") | tac | tr '\n' ' ')
have=$(sed -n 's|^//!  \([a-z_][a-z_]*\)/\{0,1\} .*|\1|p' "$src/lib.rs" | tr '\n' ' ')
if [ "$want" != "$have" ]; then
    echo "$src/lib.rs: the layer diagram lists (top to bottom) \"$have\", the order is \"$want\"; make the diagram match LAYERS of $0"
    rc=1
fi

# One line per reference: `<file> <kind> <name> <sub>`, kind `crate` (name = top-level module
# or root item, sub = the next path segment) or `super` (name = sibling in the same module).
refs() {
    local f
    find "$src" -name '*.rs' ! -path "$src/lib.rs" | sort | while read -r f; do
        awk -v file="$f" '
        # Drops comments: `//` at the start or after a blank (not `http://` in a string).
        {
            line = $0
            if (match(line, /^[[:space:]]*\/\//)) { line = "" }
            else if (match(line, /[[:space:]]\/\//)) { line = substr(line, 1, RSTART) }
            text = text " " line
        }
        function ident(s,    m) {
            if (match(s, /^[A-Za-z_][A-Za-z_0-9]*/)) return substr(s, 1, RLENGTH)
            return ""
        }
        END {
            t = text
            # Grouped imports: the names at the first depth of `crate::{ … }`.
            while ((i = index(t, "crate::{")) > 0) {
                rest = substr(t, i + 8); depth = 1; item = ""
                for (k = 1; k <= length(rest) && depth > 0; k++) {
                    c = substr(rest, k, 1)
                    if (c == "{") depth++
                    else if (c == "}") depth--
                    if (depth == 1 && c == ",") { emit(item); item = "" }
                    else if (depth >= 1 && !(depth == 1 && c == "{")) item = item c
                }
                emit(item)
                t = substr(rest, k)
            }
            t = text
            while (match(t, /crate::[A-Za-z_]/)) {
                s = substr(t, RSTART + 7)
                name = ident(s)
                sub_ = ""
                after = substr(s, length(name) + 1)
                if (substr(after, 1, 2) == "::") sub_ = ident(substr(after, 3))
                print file, "crate", name, (sub_ == "" ? "-" : sub_)
                t = substr(s, length(name) + 1)
            }
            t = text
            while (match(t, /(^|[^A-Za-z_0-9:])super::[A-Za-z_]/)) {
                s = substr(t, RSTART + RLENGTH - 1)
                name = ident(s)
                if (name != "super" && name != "self") print file, "super", name, "-"
                t = substr(s, length(name) + 1)
            }
        }
        function emit(item,    n, after, sub_) {
            gsub(/[[:space:]]/, "", item)
            if (item == "") return
            n = ident(item)
            if (n == "" || n == "self") return
            after = substr(item, length(n) + 1); sub_ = "-"
            if (substr(after, 1, 2) == "::") { sub_ = ident(substr(after, 3)); if (sub_ == "") sub_ = "-" }
            print file, "crate", n, sub_
        }
        ' "$f"
    done
}

all=$(refs)

awk -v layers="$LAYERS" -v mods="$(echo $mods)" -v src="$src" '
BEGIN {
    n = split(layers, L, " ")
    for (i = 1; i <= n; i++) rank[L[i]] = i
    split(mods, M, " ")
    for (i in M) ismod[M[i]] = 1
    bad = 0
}
# Top-level module of a file, and its submodule (the next path part, "" for mod.rs).
function top(f,    p, parts) {
    p = substr(f, length(src) + 2)
    split(p, parts, "/")
    sub(/\.rs$/, "", parts[1])
    return parts[1]
}
function subof(f,    p, parts, k) {
    p = substr(f, length(src) + 2)
    k = split(p, parts, "/")
    if (k < 2) return ""
    sub(/\.rs$/, "", parts[2])
    return parts[2] == "mod" ? "" : parts[2]
}
function depth(f,    p, parts) {
    p = substr(f, length(src) + 2)
    return split(p, parts, "/")
}
$1 == "SIB" { sibling_file[$2] = 1; next }
{
    f = $1; kind = $2; name = $3; s = $4
    m = top(f)
    if (m == "main") {
        next
    }
    if (kind == "crate") {
        if (!(name in ismod)) next    # a crate-root item (VERSION)
        if (name != m) {
            edge[m "\t" name] = edge[m "\t" name] f "\n"
            if (rank[name] > rank[m]) {
                printf "%s: %s imports crate::%s%s, a higher layer (order, bottom to top: %s)\n", f, m, name, (s == "-" ? "" : "::" s), layers
                bad = 1
            }
        } else if (s != "-" && subof(f) != "" && s != subof(f)) {
            sedge[m "\t" subof(f) "\t" s] = f
        }
    } else if (kind == "super" && depth(f) == 2 && subof(f) != "" && name != subof(f)) {
        # src/<m>/<a>.rs: `super::b` is sibling b (or an item of mod.rs: skipped below).
        sedge[m "\t" subof(f) "\t" name] = f
    }
}
END {
    # The two graphs: top-level modules (edges `a\tb` with the first file) and the sibling
    # files of each module (nodes `m/a`).
    for (e in edge) {
        split(e, p, "\t"); adj[p[1]] = adj[p[1]] " " p[2]
        split(edge[e], fs, "\n"); efile[e] = fs[1]
    }
    for (e in sedge) {
        split(e, p, "\t")
        if (!((p[1] "/" p[3]) in sibling_file)) continue
        a = p[1] "/" p[2]; b = p[1] "/" p[3]
        adj2[a] = adj2[a] " " b; efile2[a "\t" b] = sedge[e]
    }
    if (circles(adj, efile, "top-level modules")) bad = 1
    if (circles(adj2, efile2, "files of one module")) bad = 1
    exit bad
}
# Reports each circle of the graph `g` once (from its smallest node); true if there is one.
function circles(g, files, what,    node, found) {
    found = 0
    for (node in g) {
        for (x in seen) delete seen[x]
        if (dfs(g, files, what, node, node, node)) found = 1
    }
    return found
}
function dfs(g, files, what, start, at, path,    k, nb, cnt) {
    cnt = split(g[at], nb, " ")
    for (k = 1; k <= cnt; k++) {
        if (nb[k] == start) {
            if (start == smallest(path))
                printf "import circle between %s: %s -> %s (%s)\n", what, path, start, uses(files, path " -> " start)
            return 1
        }
        if (nb[k] in seen) continue
        seen[nb[k]] = 1
        if (dfs(g, files, what, start, nb[k], path " -> " nb[k])) return 1
    }
    return 0
}
function smallest(p,    parts, c, k, s) {
    gsub(/ -> /, " ", p)
    c = split(p, parts, " "); s = parts[1]
    for (k = 2; k <= c; k++) if (parts[k] < s) s = parts[k]
    return s
}
function uses(files, p,    parts, c, k, out) {
    gsub(/ -> /, " ", p)
    c = split(p, parts, " "); out = ""
    for (k = 1; k < c; k++)
        out = out (out == "" ? "" : ", ") files[parts[k] "\t" parts[k + 1]] " uses " parts[k + 1]
    return out
}
' <(
    # First the sibling files and directories of every module, as `SIB <module>/<name>`.
    find "$src" -mindepth 2 -maxdepth 2 \( -name '*.rs' -o -type d \) |
        sed "s|^$src/||; s|\.rs\$||" | grep -v '/mod$' | sort -u | sed 's|^|SIB |'
    echo "$all"
) || rc=1

# main.rs: the binary only dispatches to the CLI.
if [ -f "$src/main.rs" ]; then
    other=$(grep -v '^[[:space:]]*//' "$src/main.rs" | grep -o 'skywire::[a-z_]*' | grep -v '^skywire::cli$' || true)
    if [ -n "$other" ]; then
        echo "$src/main.rs: imports $(echo $other), but the binary may use only skywire::cli"
        rc=1
    fi
fi

if [ "$rc" != 0 ]; then
    echo "layers.sh: the imports above break the layer order (docs/architecture.md \"Layers\"; the order is LAYERS in $0)" >&2
fi
exit "$rc"
