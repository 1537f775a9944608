#!/bin/sh
# The floor: what a careful shell script does with the OpenSSH client. One connection
# per server, the rendered tree as one tar stream into a new directory, a symlink flip,
# `nginx -t`, `nginx -s reload` (which parses the config again before it signals).
#
# (It flips its own `floor-current` link so that it leaves rpcc's records alone.)
#
# usage: floor.sh <local tree> <generation id> <managed root> <nginx root> -- <ssh argv…>
set -eu
tree=$1 id=$2 mroot=$3 root=$4
shift 4
[ "$1" = -- ] && shift
remote="set -e
D=$mroot/generations/$id
rm -rf \$D; mkdir -p \$D; tar -x -C \$D
ln -sfn generations/$id $mroot/floor.tmp; mv -T $mroot/floor.tmp $mroot/floor-current
ln -sfn $mroot/floor-current/nginx.conf $root/nginx.conf.tmp; mv -T $root/nginx.conf.tmp $root/nginx.conf
/usr/sbin/nginx -t -q -c $root/nginx.conf
/usr/sbin/nginx -s reload -c $root/nginx.conf"
tar -C "$tree" -cf - . | "$@" "$remote"
