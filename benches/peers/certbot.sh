#!/bin/sh
# The certbot peer: what an operator who already runs certbot does for N sites served by
# several servers. certbot runs on the server DNS points at (here: locally, as root,
# writing into that server's webroot), once per site, `certonly --webroot` (never
# `--nginx`); then the certificates go to every server in one tar stream per server over
# OpenSSH, and each server runs `nginx -t` and `nginx -s reload`, servers in parallel.
#
# usage: certbot.sh <directory-url> <ca-bundle> <webroot> <state-dir> <sites-file> -- <server-spec>…
#   sites-file: one line per site, its names separated by spaces (first = the site)
#   server-spec: "<dest-dir>|<nginx-conf>|<ssh argv, space separated>"
set -eu
directory=$1 bundle=$2 webroot=$3 state=$4 sites=$5
shift 5
[ "$1" = -- ] && shift
mkdir -p "$state/config" "$state/work" "$state/logs"
while read -r names; do
    [ -n "$names" ] || continue
    args=''
    for n in $names; do args="$args -d $n"; done
    # shellcheck disable=SC2086 # one -d per name
    REQUESTS_CA_BUNDLE=$bundle certbot certonly --webroot -w "$webroot" $args \
        --server "$directory" --non-interactive --agree-tos --register-unsafely-without-email \
        --config-dir "$state/config" --work-dir "$state/work" --logs-dir "$state/logs" \
        --no-random-sleep-on-renew --quiet
done <"$sites"
pids=''
for spec in "$@"; do
    dest=${spec%%|*} rest=${spec#*|}
    conf=${rest%%|*} ssh=${rest#*|}
    # shellcheck disable=SC2086 # the ssh argv
    tar -C "$state/config" -chf - live | $ssh "set -e; mkdir -p $dest; tar -x -C $dest; /usr/sbin/nginx -t -q -c $conf; /usr/sbin/nginx -s reload -c $conf" &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
