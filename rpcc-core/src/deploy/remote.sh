# rpcc remote helper (fixed text). Two ways to run it:
# - installed (`rpcc helper`, root-owned, run through `sudo -n -- <helper> <command> …`):
#   the file's first lines set `rpcc_conf` to the path of its root-owned configuration
#   (`rpcc bootstrap` writes it); every path and name the helper uses comes from there.
# - sent with each command (`sh -c <this> rpcc <configuration> <command> …`), as the
#   login user or under the server's own sudo: the configuration is the first argument.
# Either way argv carries no path: only a command, hex generation ids, numbers, a holder
# name ([A-Za-z0-9._:@-], at most 128) and a base64 signature. The configuration is
# `key=value` lines (absolute paths of letters, digits and / . _ - + @, no `..`):
# managed_root, mode (owned|include), nginx (the binary), nginx_root, pid_file,
# error_log, reload (signal|systemctl|service), unit, signing_key (a PEM Ed25519 public
# key: staged archives must carry a signature it verifies).
# An installed helper trusts its configuration, and every path it names that root runs
# or writes (managed root, nginx root, nginx binary, signing key), only when the file and
# every directory above it are root's and nobody else can change them; the managed root
# must hold nothing of anyone else but its `acme` webroot. The master it signals must be
# the configured nginx binary.
# Files arrive as a tar stream on stdin, never through echo or heredocs.
#
# Exit codes: 0 ok, 2 usage, 10 lock held by another holder, 11 our lock was lost,
# 12 staged files do not match their manifest, 13 nginx rejected the tree (nginx -t,
# or the master's parse in single-parse mode, switched back),
# 14 the reload did not take effect, 15 nginx is not running, 16 no such generation,
# 17 the main config does not include rpcc's tree, 18 file system error, 19 the
# caller's deadline passed (nothing changed), 20 the tree loads code or includes files
# outside itself (refused before nginx parses it), 21 the archive's signature is missing
# or does not verify, 22 the configuration, or a path it names, is not root's alone,
# 75 guard busy.
#
# Deadlines: every command that changes something takes the caller's deadline (Unix
# seconds on this server's clock, 0 = none), computed by the caller so that it passes
# before the caller gives up on the command and reports the outcome. A helper that
# starts late (its request was held up by a stalled connection), waits long for the
# guard, or is still running when the caller has timed out never starts a change
# (lock, stage, switch, signal, switch-back, commit) after it: what the caller reported
# stays true.
set -u
# A vanished control plane (cut connection, closed channel) must not kill the helper
# between two steps that belong together (switch, then signal): writes to a closed
# stdout fail instead of raising SIGPIPE, and a hang-up is ignored.
trap '' HUP PIPE
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

fail() { code=$1; shift; printf 'rpcc-error: %s\n' "$*" >&2; exit "$code"; }

# A configuration path: absolute, rpcc's path alphabet, no `.` or `..` segment.
conf_path() { # key value
    case $2 in /*) ;; *) fail 22 "helper configuration: $1 '$2' is not an absolute path" ;; esac
    case $2 in *[!A-Za-z0-9._/@+-]* | *//*) fail 22 "helper configuration: $1 '$2' has characters outside A-Z a-z 0-9 . _ / @ + -" ;; esac
    case "$2/" in */./* | */../*) fail 22 "helper configuration: $1 '$2' has a . or .. segment" ;; esac
}

# Read the configuration (key=value lines on stdin) into M, mode, bin, root, pidfile,
# errlog, method, unit, signing_key. Unknown keys and malformed values are refused.
load_conf() {
    M='' mode='' bin='' root='' pidfile='' errlog='' method='' unit='' signing_key=''
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in '' | '#'*) continue ;; esac
        k=${line%%=*} v=${line#*=}
        [ "$k" != "$line" ] || fail 22 "helper configuration: malformed line (key=value)"
        case $k in
        managed_root) conf_path "$k" "$v" && M=$v ;;
        nginx) conf_path "$k" "$v" && bin=$v ;;
        nginx_root) conf_path "$k" "$v" && root=$v ;;
        pid_file) conf_path "$k" "$v" && pidfile=$v ;;
        error_log) conf_path "$k" "$v" && errlog=$v ;;
        signing_key)
            [ -z "$v" ] || conf_path "$k" "$v"
            signing_key=$v
            ;;
        mode) case $v in owned | include) mode=$v ;; *) fail 22 "helper configuration: mode '$v' (owned or include)" ;; esac ;;
        reload) case $v in signal | systemctl | service) method=$v ;; *) fail 22 "helper configuration: reload '$v' (signal, systemctl or service)" ;; esac ;;
        unit)
            case $v in *[!A-Za-z0-9@._:-]*) fail 22 "helper configuration: unit '$v' (letters, digits and @ . _ : -)" ;; esac
            unit=$v
            ;;
        *) fail 22 "helper configuration: unknown key '$k'" ;;
        esac
    done
    [ -n "$M" ] || fail 22 "helper configuration: managed_root is missing"
    [ -n "$mode" ] || fail 22 "helper configuration: mode is missing"
    [ -n "$bin" ] || fail 22 "helper configuration: nginx is missing"
    [ -n "$root" ] || fail 22 "helper configuration: nginx_root is missing"
    [ -n "$pidfile" ] || fail 22 "helper configuration: pid_file is missing"
    [ -n "$errlog" ] || fail 22 "helper configuration: error_log is missing"
    [ -n "$method" ] || fail 22 "helper configuration: reload is missing"
    [ "$method" = signal ] || [ -n "$unit" ] || fail 22 "helper configuration: reload $method needs a unit"
}

# Whether every path named (each resolved, then every directory above it) is root's and
# nobody else can change it: owner uid 0, not writable by group or others, except a
# root-owned sticky directory (/tmp: others cannot rename or remove what is in it).
# One readlink and one stat for all of them.
root_controlled() { # path…
    resolved=$(readlink -e -- "$@" 2>/dev/null) || return 1
    [ "$(printf '%s\n' "$resolved" | wc -l)" = $# ] || return 1
    chain=''
    for p in $resolved; do
        while :; do
            chain="$chain $p"
            [ "$p" = / ] && break
            p=${p%/*}
            [ -n "$p" ] || p=/
        done
    done
    # shellcheck disable=SC2086 # resolved paths of rpcc's alphabet, checked above
    stat -c '%u %a %F' -- $chain 2>/dev/null | {
        ok=1
        while read -r u a kind; do
            [ "$u" = 0 ] || ok=0
            a=$((0$a))
            if [ $((a & 18)) != 0 ]; then
                [ "$kind" = directory ] && [ $((a & 512)) != 0 ] || ok=0
            fi
        done
        [ $ok = 1 ]
    }
}

if [ -n "${rpcc_conf:-}" ]; then
    # Installed: the configuration file, trusted only when root's alone.
    [ -f "$rpcc_conf" ] && [ ! -L "$rpcc_conf" ] && root_controlled "$rpcc_conf" ||
        fail 22 "$rpcc_conf is missing, or it or a directory above it is not root's alone (owner root, not group/other writable)"
    load_conf <"$rpcc_conf"
    trusted=1
else
    [ $# -ge 1 ] || fail 2 "usage: <configuration> <command> …"
    load_conf <<CONF
$1
CONF
    shift
    trusted=0
fi
[ $# -ge 1 ] || fail 2 "usage: <command> <args>…"
cmd=$1
shift
G="$M/generations"
dl=0
if [ $trusted = 1 ]; then
    # Everything root runs, reads keys from or writes through this configuration is
    # root's alone.
    [ -z "$signing_key" ] || root_controlled "$signing_key" ||
        fail 22 "signing key $signing_key is missing or not root's alone"
    [ -f "$bin" ] && root_controlled "$bin" || fail 22 "nginx binary $bin is missing or not root's alone"
    [ -d "$root" ] && root_controlled "$root" || fail 22 "nginx root $root is missing or not root's alone"
    [ -d "$M" ] && [ ! -L "$M" ] && root_controlled "$M" ||
        fail 22 "managed root $M is missing or not root's alone (rpcc bootstrap creates it)"
fi

# Inside an installed helper's managed root, nothing but its `acme` webroot belongs to
# anyone else or is writable by anyone else (a planted symlink, a foreign `generations`).
managed_root_is_roots() {
    [ $trusted = 1 ] || return 0
    odd=$(find "$M" -path "$M/acme" -prune -o \( ! -user 0 -o ! -type l -perm /022 \) -print -quit 2>/dev/null)
    [ -z "$odd" ] || fail 22 "$odd in the managed root is not root's alone; refusing to work there"
}

# Arguments: a holder name, a bounded number.
check_holder() {
    case $1 in '' | *[!A-Za-z0-9._:@-]*) fail 2 "invalid holder name (letters, digits and . _ : @ -)" ;; esac
    [ ${#1} -le 128 ] || fail 2 "holder name longer than 128"
}
check_number() { # what value
    case $2 in '' | *[!0-9]*) fail 2 "invalid $1 '$2' (digits)" ;; esac
    [ ${#2} -le 12 ] || fail 2 "$1 '$2' is too large"
}

now() { date +%s; }

# Generation ids are lower-case hex, or 0 (the hand-made config): never a path, whoever
# sent them (rpcc checks them too, but the helper does not rely on its caller).
check_id() {
    case $1 in
    0) ;;
    '' | *[!0-9a-f]*) fail 2 "invalid generation id '$1' (lower-case hex or 0)" ;;
    esac
}

# Serialize lock/activation work between rpcc processes (any control plane).
guard() {
    managed_root_is_roots
    [ -d "$G" ] || mkdir -p "$G" || fail 18 "cannot create $G"
    exec 9>>"$M/.guard" || fail 18 "cannot open $M/.guard"
    flock -w 60 9 || fail 75 "another rpcc process holds $M/.guard"
}

# Lock file: "<holder> <expires-epoch> <acquired-epoch>".
read_lock() {
    lh='' lexp=0 lacq=0
    if [ -f "$M/lock" ]; then
        read -r lh lexp lacq <"$M/lock" || true
        case $lexp in '' | *[!0-9]*) lexp=0 ;; esac
        case $lacq in '' | *[!0-9]*) lacq=0 ;; esac
    fi
}

write_lock() { # holder ttl
    t=$(now)
    printf '%s %s %s\n' "$1" $((t + $2)) "$t" >"$M/lock.tmp" && mv -f "$M/lock.tmp" "$M/lock" ||
        fail 18 "cannot write $M/lock"
}

# Under the guard: the lock must still be ours; renew it.
own_lock() { # holder ttl
    read_lock
    [ "$lh" = "$1" ] || fail 11 "lock on $M is no longer held by $1 (holder: ${lh:-none})"
    write_lock "$1" "$2"
}

# The caller's deadline: digits, 0 = none.
check_deadline() {
    case $1 in '' | *[!0-9]*) fail 2 "invalid deadline '$1' (Unix seconds, 0 = none)" ;; esac
}

# Whether the deadline has not passed yet (always, without one).
in_time() { [ "$dl" = 0 ] || [ "$(now)" -lt "$dl" ]; }

# Refuse to start a change once the caller's deadline has passed.
before_deadline() { # what
    in_time || fail 19 "the caller's deadline passed before $1 (server clock $(now), deadline $dl): the caller has given up on this command; nothing changed"
}

gen_of() { # symlink -> generation id (empty when absent)
    t=$(readlink "$1" 2>/dev/null) || t=''
    printf '%s' "${t##*/}"
}

report() {
    read_lock
    printf 'current=%s\n' "$(gen_of "$M/current")"
    c=''
    [ -f "$M/committed" ] && read -r c <"$M/committed"
    printf 'committed=%s\n' "$c"
    if [ -n "$lh" ]; then printf 'lock=%s %s %s\n' "$lh" "$lexp" "$lacq"; else echo 'lock='; fi
    printf 'now=%s\n' "$(now)"
    gens=''
    if [ -d "$G" ]; then
        for d in $(ls -1t "$G" 2>/dev/null); do
            case $d in .*) ;; *) [ -d "$G/$d" ] && gens="$gens $d" ;; esac
        done
    fi
    printf 'generations=%s\n' "${gens# }"
    u=''
    [ -f "$M/unverified" ] && read -r u <"$M/unverified"
    printf 'unverified=%s\n' "$u"
}

# Children of a process (nginx workers, cache manager/loader) into $kids, without
# forking (no command substitution): the kernel's list of the master's children when
# it has one (one read; nginx's master is single-threaded), else a scan of /proc.
children_var() {
    kids=''
    if [ -r "/proc/$1/task/$1/children" ]; then
        read -r kids <"/proc/$1/task/$1/children" 2>/dev/null || :
        return 0
    fi
    for s in /proc/[0-9]*/stat; do
        read -r cpid ccomm cstate cppid crest 2>/dev/null <"$s" || continue
        [ "$cppid" = "$1" ] && kids="$kids $cpid"
    done
}

# The title nginx gave process $1 ("nginx: worker process is shutting down") into
# $title, without forking: it is the start of the process's argv area, NUL-padded.
title_of() {
    title=''
    read -r title <"/proc/$1/cmdline" 2>/dev/null || :
}

# Whether the live (not shutting down) children of a master come from two cycles: their
# start times (field 22 of /proc/<pid>/stat, in clock ticks) differ by more than a tick.
# Leaves the live children in $live.
two_cycles() {
    children_var "$1"
    lo='' hi='' live=''
    for p in $kids; do
        title_of "$p"
        case $title in *'shutting down'*) continue ;; esac
        live="$live $p"
        read -r _1 _2 _3 _4 _5 _6 _7 _8 _9 _10 _11 _12 _13 _14 _15 _16 _17 _18 _19 _20 _21 t _r \
            2>/dev/null <"/proc/$p/stat" || continue
        case $t in '' | *[!0-9]*) continue ;; esac
        [ -z "$lo" ] || [ "$t" -lt "$lo" ] && lo=$t
        [ -z "$hi" ] || [ "$t" -gt "$hi" ] && hi=$t
    done
    [ -n "$lo" ] && [ $((hi - lo)) -gt 1 ]
}

# A generation path as rpcc writes them: relative, letters, digits and . _ - /, no
# empty, `.` or `..` segment (a trailing / for a directory member).
safe_name() {
    case $1 in '' | /* | *//* | *[!A-Za-z0-9._/-]*) return 1 ;; esac
    case "/${1%/}/" in */./* | */../* | //) return 1 ;; esac
    return 0
}

# The manifest names only generation paths (sha256sum, as root, reads what it names).
check_manifest() { # dir
    [ -f "$1/.rpcc/sha256" ] && [ ! -L "$1/.rpcc/sha256" ] || fail 12 "$1 has no manifest"
    while read -r sum name; do
        case $sum in *[!0-9a-f]*) fail 12 "malformed manifest line for '$name'" ;; esac
        [ ${#sum} = 64 ] || fail 12 "malformed manifest line for '$name'"
        safe_name "$name" || fail 12 "manifest name '$name' is not a relative generation path"
    done <"$1/.rpcc/sha256"
}

# The only modes a generation has: directories 0755, private keys
# (certs/<site>/privkey.pem) 0600, every other file 0644; owned by whoever runs this.
fixed_modes() { # dir
    find "$1" -type d -exec chmod 0755 {} + &&
        find "$1" -type f -exec chmod 0644 {} + &&
        find "$1" -type f -path "$1/certs/*/privkey.pem" -exec chmod 0600 {} +
}

# Before a root nginx parses a tree (nginx -t, or the master's reload): no directive
# that loads or runs code (load_module, perl, lua, njs), and no include of anything but
# the generation's own files. Exit 20 otherwise.
check_content() { # dir id
    files=$(cd "$1" && find . -type f ! -path './.rpcc/*' ! -path './certs/*' -print)
    [ -n "$files" ] || return 0
    hit=$(cd "$1" && printf '%s\n' "$files" | xargs grep -nE \
        '(^|[;{}[:space:]])(load_module|perl|perl_modules|perl_require|perl_set|js_[a-z_]+|lua_[a-z_]+|[a-z_]+_by_lua(_block|_file)?)([[:space:]]|;|$)' \
        /dev/null | head -n 1)
    [ -z "$hit" ] || fail 20 "refused before nginx parses it: a directive that loads or runs code: ${hit#./}"
    (cd "$1" && printf '%s\n' "$files" | xargs grep -hoE '(^|[;{}[:space:]])include[[:space:]]+[^;]*' /dev/null) |
        while read -r _include arg; do
            arg=${arg%\"} arg=${arg#\"} arg=${arg%\'} arg=${arg#\'}
            case $arg in
            *..*) ;;
            "$M/generations/$2/"*) continue ;;
            esac
            printf 'rpcc-error: refused before nginx parses it: include of %s (only files of generation %s)\n' "$arg" "$2" >&2
            exit 20
        done || exit 20
}

verify_tree() { # dir
    (cd "$1" && sha256sum -c --quiet --strict .rpcc/sha256 >/dev/null 2>&1) ||
        fail 12 "files in $1 do not match its manifest (changed on the server?)"
}

# `nginx -t` on generation $1 as nginx will load it ($2 = 1: verify the tree's hashes
# first). Exit 13 when nginx refuses it.
test_tree() {
    id=$1
    D="$G/$id"
    [ -d "$D" ] || fail 16 "generation $id is not on the server"
    [ "$2" = 0 ] || verify_tree "$D"
    # Test a copy placed where nginx loads the main config from, so relative paths
    # (e.g. a hand-made generation 0's `include mime.types`) resolve as they will.
    tmp="$root/.rpcc-validate-$id.conf"
    if [ "$mode" = owned ]; then
        cp "$D/nginx.conf" "$tmp" || fail 18 "cannot write $tmp"
    else
        [ -f "$root/nginx.conf" ] || fail 17 "$root/nginx.conf does not exist"
        grep -qE "^[^#]*include[[:space:]]+$M/current/http.conf[[:space:]]*;" "$root/nginx.conf" ||
            fail 17 "$root/nginx.conf does not include $M/current/http.conf"
        sed "s#$M/current/#$D/#g" "$root/nginx.conf" >"$tmp" || fail 18 "cannot write $tmp"
    fi
    "$bin" -t -q -c "$tmp" 2>&1
    rc=$?
    rm -f "$tmp"
    [ $rc = 0 ] || exit 13
    echo "valid=$id"
}

case $cmd in
inspect) # [with-manifest]
    report
    printf 'helper=2\nconf=managed_root=%s mode=%s nginx=%s nginx_root=%s pid_file=%s error_log=%s reload=%s unit=%s signing_key=%s\n' \
        "$M" "$mode" "$bin" "$root" "$pidfile" "$errlog" "$method" "$unit" "$signing_key"
    cur=$(gen_of "$M/current")
    if [ "${1:-0}" = 1 ] && [ -n "$cur" ] && [ -f "$G/$cur/.rpcc/sha256" ] && [ ! -L "$G/$cur/.rpcc/sha256" ]; then
        echo '--manifest--'
        cat "$G/$cur/.rpcc/sha256"
    fi
    ;;

lock) # holder ttl deadline [dead-holder]
    [ $# -ge 3 ] || fail 2 "usage: lock <holder> <ttl> <deadline> [dead-holder]"
    holder=$1 ttl=$2 dl=$3 dead=${4:-}
    check_holder "$holder"
    [ -z "$dead" ] || check_holder "$dead"
    check_number ttl "$ttl"
    check_deadline "$dl"
    guard
    before_deadline "taking the lock"
    read_lock
    t=$(now)
    if [ -n "$lh" ] && [ "$lh" != "$holder" ]; then
        # A live lock is only broken when the caller proved its holder dead (same
        # machine, process gone) and it is still exactly that holder's lock.
        if [ "$lexp" -gt "$t" ] && [ "$lh" != "$dead" ]; then
            printf 'held=%s %s %s\n' "$lh" "$lexp" "$lacq"
            exit 10
        fi
        printf 'broke-stale=%s %s %s\n' "$lh" "$lexp" "$lacq"
    fi
    write_lock "$holder" "$ttl"
    # Half-staged trees of crashed runs (the lock is ours: nothing else is staging).
    for d in "$G"/.staging-*; do
        [ -e "$d" ] || continue
        if rm -rf "$d"; then printf 'cleaned=%s\n' "${d##*/}"; else printf 'warning=cannot remove %s\n' "$d"; fi
    done
    report
    ;;

unlock) # holder
    [ $# -ge 1 ] || fail 2 "usage: unlock <holder>"
    check_holder "$1"
    guard
    read_lock
    [ "$lh" = "$1" ] && rm -f "$M/lock"
    exit 0
    ;;

stage) # holder ttl deadline id prev signature [test]  (stdin: tar)
    # With `test`, the staged tree then goes through `nginx -t` as `validate` runs it
    # (one round trip for both). signature: base64 Ed25519 signature of
    # "rpcc-stage-v1 <id> <sha256 of the archive>\n", or `-` (refused when the
    # configuration names a signing key).
    [ $# -ge 6 ] || fail 2 "usage: stage <holder> <ttl> <deadline> <id> <prev> <signature> [test]"
    holder=$1 ttl=$2 dl=$3 id=$4 prev=$5 sig=$6 after=${7:-}
    check_holder "$holder"
    check_number ttl "$ttl"
    check_deadline "$dl"
    check_id "$id"
    [ "$prev" = - ] || check_id "$prev"
    case $sig in
    -) ;;
    '' | *[!A-Za-z0-9+/=]*) fail 2 "invalid signature word (base64, or - for none)" ;;
    esac
    (guard && before_deadline staging && own_lock "$holder" "$ttl") || exit $?
    S="$G/.staging-$id"
    rm -rf "$S" && mkdir -p "$S" || fail 18 "cannot create $S"
    # The archive is read whole and checked before anything is unpacked: only regular
    # files and directories (no symlinks, hard links, devices or fifos), relative names
    # of rpcc's path alphabet with no `..`. Unpacked without the archive's owners or
    # modes; every file then gets the fixed mode for its kind, whatever the archive says.
    A="$S.tar"
    cat >"$A" || fail 18 "cannot receive the generation"
    if [ -n "$signing_key" ]; then
        # Only archives the control plane signed for this id reach a root nginx.
        [ "$sig" != - ] ||
            fail 21 "this server accepts only signed generations (signing key $signing_key); the control plane sent none"
        sum=$(sha256sum <"$A") && sum=${sum%% *}
        printf 'rpcc-stage-v1 %s %s\n' "$id" "$sum" >"$A.msg" &&
            printf '%s' "$sig" | base64 -d >"$A.sig" 2>/dev/null || fail 21 "malformed signature"
        openssl pkeyutl -verify -pubin -inkey "$signing_key" -rawin -in "$A.msg" -sigfile "$A.sig" >/dev/null 2>&1 ||
            fail 21 "the archive's signature does not verify with $signing_key (signed by another control plane's key, or changed on the way)"
        rm -f "$A.msg" "$A.sig"
    fi
    tar -t -v -f "$A" >"$A.list" 2>/dev/null || fail 12 "the generation archive is not a tar archive"
    while read -r perm _owner _size _date _time name rest; do
        case $perm in -* | d*) ;; *) fail 12 "archive member '$name' is not a regular file or directory" ;; esac
        [ -z "$rest" ] || fail 12 "archive member '$name' is a link"
        safe_name "$name" || fail 12 "archive member name '$name' is not a relative generation path"
    done <"$A.list"
    tar -x -f "$A" -C "$S" --no-same-owner --no-same-permissions 2>&1 ||
        fail 18 "cannot unpack the generation into $S"
    rm -f "$A" "$A.list"
    if [ -f "$S/.rpcc/links" ]; then
        # Unchanged files: hard links to the live generation's (one cp for all), named
        # like archive members, from a generation with no symlink in it.
        [ -d "$G/$prev" ] || fail 16 "previous generation $prev is missing"
        while read -r name; do
            safe_name "$name" || fail 12 "linked name '$name' is not a relative generation path"
        done <"$S/.rpcc/links"
        [ -z "$(find "$G/$prev" ! -type f ! -type d -print -quit)" ] ||
            fail 12 "generation $prev holds something other than files and directories"
        (cd "$G/$prev" && xargs -r cp -l --parents -t "$S" <"$S/.rpcc/links") ||
            fail 12 "cannot link unchanged files from generation $prev"
    fi
    check_manifest "$S"
    fixed_modes "$S" || fail 18 "cannot set the modes of $S"
    verify_tree "$S"
    check_content "$S" "$id"
    (cd "$S" && find . -type f ! -path './.rpcc/*' -printf '%m %P\n' | sort | cmp -s - .rpcc/modes) ||
        fail 12 "file modes in $S differ from the manifest"
    before_deadline "moving the staged tree into place"
    [ -e "$G/$id" ] && rm -rf "$G/$id"
    mv -T "$S" "$G/$id" || fail 18 "cannot move $S into place"
    echo "staged=$id"
    [ "$after" = test ] && test_tree "$id" 0
    exit 0
    ;;

validate) # id verify-hashes
    [ $# -ge 1 ] || fail 2 "usage: validate <id> [verify-hashes]"
    check_id "$1"
    # Just staged (and verified) by this run: no need to hash it again.
    test_tree "$1" "${2:-1}"
    ;;

activate) # holder ttl deadline id ticks [parse [verify]]
    # ticks: the timeout in 20 ms polls. parse: "test" (the tree passed nginx -t) or
    # "master" (single parse: the master's own parse is the validation; a refusal
    # switches back at once and exits 13). verify: 1 = check the tree's hashes first.
    [ $# -ge 5 ] || fail 2 "usage: activate <holder> <ttl> <deadline> <id> <ticks> [parse [verify]]"
    holder=$1 ttl=$2 dl=$3 id=$4 ticks=$5 parse=${6:-test} verify=${7:-0}
    check_holder "$holder"
    check_number ttl "$ttl"
    check_number ticks "$ticks"
    check_deadline "$dl"
    check_id "$id"
    case $parse in test | master) ;; *) fail 2 "unknown parse mode $parse" ;; esac
    guard
    before_deadline "activating $id"
    own_lock "$holder" "$ttl"
    D="$G/$id"
    [ -d "$D" ] || fail 16 "generation $id is not on the server"
    [ "$verify" = 0 ] || verify_tree "$D"
    if [ "$parse" = master ] && [ "$mode" = include ]; then
        # No nginx -t ran, so its check of the hand-made main config happens here.
        grep -qE "^[^#]*include[[:space:]]+$M/current/http.conf[[:space:]]*;" "$root/nginx.conf" 2>/dev/null ||
            fail 17 "$root/nginx.conf does not include $M/current/http.conf"
    fi
    was=$(gen_of "$M/current")
    master=''
    [ -f "$pidfile" ] && read -r master <"$pidfile"
    case $master in '' | *[!0-9]*) fail 15 "nginx is not running (no pid in $pidfile)" ;; esac
    kill -0 "$master" 2>/dev/null || fail 15 "nginx is not running (pid $master from $pidfile)"
    if [ $trusted = 1 ]; then
        # Signal only the configured nginx (a pid file is no proof of what runs).
        exe=$(readlink "/proc/$master/exe" 2>/dev/null) || exe=''
        [ "${exe% (deleted)}" = "$(readlink -e -- "$bin")" ] ||
            fail 15 "pid $master from $pidfile is not $bin (it runs ${exe:-something unknown})"
    fi
    main="$root/nginx.conf" target="$M/current/nginx.conf"
    link_main=0
    if [ "$mode" = owned ] && [ "$(readlink "$main" 2>/dev/null)" != "$target" ]; then
        link_main=1
        # The hand-made config becomes generation 0 before rpcc's first activation.
        if [ ! -d "$G/0" ] && [ -f "$main" ]; then
            rm -rf "$G/.staging-0" && mkdir -p "$G/.staging-0" &&
                cp -p "$main" "$G/.staging-0/nginx.conf" &&
                printf 'backup of %s taken %s\n' "$main" "$(now)" >"$G/.staging-0/RPCC-BACKUP" &&
                mkdir -p "$G/.staging-0/.rpcc" &&
                (cd "$G/.staging-0" && sha256sum nginx.conf RPCC-BACKUP >.rpcc/sha256) &&
                mv -T "$G/.staging-0" "$G/0" || fail 18 "cannot back up $main"
            [ -f "$M/committed" ] || { echo 0 >"$M/committed.tmp" && mv -f "$M/committed.tmp" "$M/committed"; }
            echo "backup=0"
        fi
    fi
    # Never switch while nginx is still reloading (a signal from an interrupted earlier
    # run): that reload could read either tree, and our signal would merge into it.
    # Such a reload began before we took the guard (its helper was killed and released
    # it), so it is already running at the first sample. An idle master sleeps in
    # sigsuspend, a parsing one runs; after a parse it also sleeps (≈ 100 ms) before it
    # retires the old workers, and then two cycles' workers both take connections. So
    # settled = the master asleep and every live worker from one cycle (start times
    # within a tick), 3 samples in a row, 5 ms apart. Workers of one cycle can start
    # further apart (a loaded machine; a worker the master respawned after a crash), so
    # a set of live workers unchanged for 60 samples (≥ 300 ms, longer than the master's
    # sleep before it retires an old cycle) counts as settled too: never stuck.
    # When the main config names its worker count (`auto`: one per online CPU, as nginx
    # counts), no more live workers than that also means one cycle: old and new
    # together are twice as many.
    wp=$(sed -n 's/^[[:space:]]*worker_processes[[:space:]][[:space:]]*\([0-9a-z]*\)[[:space:]]*;.*/\1/p' \
        "$root/nginx.conf" 2>/dev/null | head -n 1)
    [ "$wp" = auto ] && wp=$(getconf _NPROCESSORS_ONLN 2>/dev/null)
    case $wp in '' | *[!0-9]*) wp='' ;; esac
    settled=0 j=0 same=0 seen=''
    while [ $j -lt $((ticks * 4)) ]; do
        st=''
        read -r _p _c st _rest 2>/dev/null <"/proc/$master/stat" || st=S
        if [ "$st" = S ]; then
            mixed=0
            two_cycles "$master" && mixed=1
            if [ "$live" = "$seen" ]; then same=$((same + 1)); else same=0 seen=$live; fi
            if [ $mixed = 1 ] && [ -n "$wp" ]; then
                n=0
                for p in $live; do
                    title_of "$p"
                    case $title in *'worker process'*) n=$((n + 1)) ;; esac
                done
                [ $n -ge 1 ] && [ $n -le "$wp" ] && mixed=0
            fi
            if [ $mixed = 0 ] || [ $same -ge 60 ]; then st=idle; fi
        else
            same=0 seen=''
        fi
        if [ "$st" = idle ]; then
            settled=$((settled + 1))
            [ $settled -ge 3 ] && break
        else
            settled=0
        fi
        sleep 0.005
        j=$((j + 1))
    done
    [ $settled -ge 3 ] || fail 14 "nginx (pid $master) stayed busy for $((ticks / 50)) s (a reload in progress?); nothing switched"
    # A refusal is a line nginx's master wrote itself: its timestamp, the level right
    # after it, then the master's pid. Request URIs and headers end up in the same log
    # (a client asking for `/[emerg]` during a deploy), always in lines of other levels
    # written by workers: never count those.
    refusal="^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \\[(emerg|alert)\\] $master#"
    children_var "$master"
    before="$kids "
    size=0
    [ -f "$errlog" ] && size=$(wc -c <"$errlog")
    # The point of no return: the switch and its signal follow within milliseconds.
    before_deadline "switching to $id"
    # From here on the engine must assume `current` may have moved (a helper killed
    # before it says `activated=` may still have switched).
    echo "switching=$id"
    # Until this activation is verified the served config is unknown: a later run that
    # finds this mark re-activates the committed generation instead of calling the
    # server up to date.
    echo "$id" >"$M/unverified.tmp" && mv -f "$M/unverified.tmp" "$M/unverified" ||
        fail 18 "cannot write $M/unverified"
    ln -sfn "generations/$id" "$M/.current.tmp" && mv -T "$M/.current.tmp" "$M/current" ||
        fail 18 "cannot switch $M/current"
    touch "$D"
    if [ $link_main = 1 ]; then
        ln -sfn "$target" "$root/.nginx.conf.rpcc-tmp" && mv -T "$root/.nginx.conf.rpcc-tmp" "$main" ||
            fail 18 "cannot point $main at $target"
    fi
    # Single parse, refused: `current` (and an owned main config) go back to what the
    # master still runs, and that state is as verified as it was before the switch.
    switched_back=0
    switch_back() {
        # Past the deadline the caller has reported already: leave `current` marked
        # unverified for the next run, which re-activates the committed generation.
        in_time || return 1
        if [ -n "$was" ]; then
            ln -sfn "generations/$was" "$M/.current.tmp" && mv -T "$M/.current.tmp" "$M/current" || return 1
        else
            rm -f "$M/current" || return 1
        fi
        if [ $link_main = 1 ]; then
            cp -p "$G/0/nginx.conf" "$root/.nginx.conf.rpcc-tmp" && mv -T "$root/.nginx.conf.rpcc-tmp" "$main" ||
                return 1
        fi
        rm -f "$M/unverified" && switched_back=1
        echo "switched-back=${was:-none}"
    }
    refused() {
        [ $switched_back = 1 ] && exit 13
        exit 14
    }
    case $method in
    signal) kill -HUP "$master" || fail 14 "cannot signal nginx (pid $master)" ;;
    systemctl) systemctl reload "$unit" 2>&1 || fail 14 "systemctl reload $unit failed" ;;
    service) service "$unit" reload 2>&1 || fail 14 "service $unit reload failed" ;;
    *) fail 2 "unknown reload method $method" ;;
    esac
    echo "activated=$id"
    # Success: a new child runs and every old one has exited or is shutting down (it
    # renames itself before closing its listeners), so new connections get the new
    # config. Failure: nginx logs [emerg]/[alert]; it keeps retrying e.g. bind() for
    # a while, so wait until the log is quiet before reporting (and before a restore
    # sends the next signal).
    # Polling must stay cheap: nginx is parsing the new config on the same CPUs. The
    # success check forks nothing until new workers exist; the log is read every
    # tenth tick (every tick once it shows a failure).
    # Single parse: the log is read every tick, so a refusal is switched back at once.
    every=10
    [ "$parse" = master ] && every=1
    i=0 failing=0 quiet=0 last=$size
    while [ $i -lt "$ticks" ]; do
        look=0
        if [ $failing = 1 ]; then
            look=1
        elif [ $((i % every)) = 0 ]; then
            look=1
            # A refusal is logged at the end of the parse: while the master is still
            # running (parsing), there is nothing new to read.
            mst=''
            read -r _p _c mst _rest 2>/dev/null <"/proc/$master/stat" || mst=''
            [ "$parse" = master ] && [ "$mst" = R ] && look=0
        fi
        if [ $look = 1 ]; then
            cur=0
            [ -f "$errlog" ] && cur=$(wc -c <"$errlog")
            if [ $failing = 0 ] && [ "$cur" -gt "$size" ] &&
                tail -c +$((size + 1)) "$errlog" | grep -qE "$refusal"; then
                failing=1
                # The master has finished parsing (it logs a refusal at the end of
                # the parse or after it) and kept the old configuration in memory.
                [ "$parse" = master ] && switch_back
            fi
            if [ $failing = 1 ]; then
                if [ "$cur" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
                if [ $quiet -ge 40 ]; then
                    tail -c +$((size + 1)) "$errlog" | grep -E "$refusal" | sort -u -k3 >&2
                    refused
                fi
            fi
            last=$cur
        fi
        if [ $failing = 0 ]; then
            children_var "$master"
            fresh=0
            for p in $kids; do
                case " $before " in *" $p "*) ;; *) fresh=1 ;; esac
            done
            if [ $fresh = 1 ]; then
                old_live=0
                for p in $kids; do
                    case " $before " in
                    *" $p "*)
                        title_of "$p"
                        case $title in *'shutting down'*) ;; *) old_live=1 ;; esac
                        ;;
                    esac
                done
                if [ $old_live = 0 ]; then
                    rm -f "$M/unverified"
                    echo "reloaded=$id"
                    exit 0
                fi
            fi
        fi
        kill -0 "$master" 2>/dev/null || fail 15 "nginx (pid $master) exited during the reload"
        sleep 0.02
        i=$((i + 1))
    done
    if [ $failing = 1 ]; then
        tail -c +$((size + 1)) "$errlog" | grep -E "$refusal" | sort -u -k3 >&2
        refused
    fi
    fail 14 "nginx started no new worker processes within $((ticks / 50)) s of the reload"
    ;;

commit) # holder ttl deadline id keep
    [ $# -ge 5 ] || fail 2 "usage: commit <holder> <ttl> <deadline> <id> <keep>"
    holder=$1 ttl=$2 dl=$3 id=$4 keep=$5
    check_holder "$holder"
    check_number ttl "$ttl"
    check_number keep "$keep"
    check_deadline "$dl"
    check_id "$id"
    guard
    before_deadline "committing $id"
    own_lock "$holder" "$ttl"
    [ "$(gen_of "$M/current")" = "$id" ] || fail 16 "current is not $id"
    was=''
    [ -f "$M/committed" ] && read -r was <"$M/committed"
    echo "$id" >"$M/committed.tmp" && mv -f "$M/committed.tmp" "$M/committed" || fail 18 "cannot write $M/committed"
    # Keep the new generation, the one it replaced (the rollback target), generation 0
    # (the hand-made config) and the newest others up to `keep` in all.
    n=1
    [ -n "$was" ] && [ "$was" != "$id" ] && [ "$was" != 0 ] && [ -d "$G/$was" ] && n=2
    for d in $(ls -1t "$G"); do
        case $d in .* | 0 | "$id" | "$was") continue ;; esac
        n=$((n + 1))
        if [ $n -gt "$keep" ]; then
            rm -rf "$G/$d" && echo "pruned=$d"
        fi
    done
    rm -f "$M/lock"
    echo "committed=$id"
    ;;

hashes) # print sha256 of every file of the current generation, as the server has it
    cur=$(gen_of "$M/current")
    echo "current=$cur"
    [ -n "$cur" ] || exit 0
    (cd "$G/$cur" && find . -type f ! -path './.rpcc/*' -exec sha256sum {} +) || fail 18 "cannot read $G/$cur"
    ;;

fetch) # id (stdin: newline-separated relative paths) -> tar on stdout
    # Only generation paths, never a private key, from a generation with nothing but
    # files and directories in it.
    [ $# -ge 1 ] || fail 2 "usage: fetch <id>"
    check_id "$1"
    [ -d "$G/$1" ] || fail 16 "generation $1 is not on the server"
    [ -z "$(find "$G/$1" ! -type f ! -type d -print -quit)" ] ||
        fail 12 "generation $1 holds something other than files and directories"
    names=''
    while read -r name; do
        safe_name "$name" || fail 12 "'$name' is not a relative generation path"
        case $name in certs/*/privkey.pem) fail 12 "private keys are never fetched ($name)" ;; esac
        names="$names$name
"
    done
    printf '%s' "$names" | tar -c -f - -C "$G/$1" --no-recursion -T - 2>/dev/null
    ;;

*) fail 2 "unknown command $cmd" ;;
esac
