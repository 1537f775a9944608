#!/bin/sh
# The floor: what a careful shell script does with the OpenSSH client. One connection
# per server, the rendered tree as one tar stream into a new directory, a symlink flip,
# `nginx -t`, `nginx -s reload` (which parses the config again before it signals).
#
# usage: floor.sh <local tree> <generation id> <managed root> <nginx root> -- <ssh argv…>
set -eu
tree=$1 id=$2 mroot=$3 root=$4
shift 4
[ "$1" = -- ] && shift
remote="set -e
D=$mroot/generations/$id
rm -rf \$D; mkdir -p \$D; tar -x -C \$D
ln -sfn generations/$id $mroot/current.tmp; mv -T $mroot/current.tmp $mroot/current
ln -sfn $mroot/current/nginx.conf $root/nginx.conf.tmp; mv -T $root/nginx.conf.tmp $root/nginx.conf
/usr/sbin/nginx -t -q -c $root/nginx.conf
/usr/sbin/nginx -s reload -c $root/nginx.conf"
tar -C "$tree" -cf - . | "$@" "$remote"
