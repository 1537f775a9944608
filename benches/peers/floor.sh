#!/bin/sh
# The floor: what a careful shell script does with the OpenSSH client. One connection
# per server, the rendered tree as one tar stream into a new directory, a symlink flip,
# `nginx -t`, `nginx -s reload` (which parses the config again before it signals).
#
# verify=1 is the *verified floor*: the same script, but its clock stops only when the
# master runs new workers and every old one is gone or shutting down, polled every
# 20 ms from /proc exactly as rpcc's helper does (the kernel's list of the master's
# children, titles read with the read builtin: no fork but the sleep).
#
# (It flips its own `floor-current` link so that it leaves rpcc's records alone.)
#
# usage: floor.sh <local tree> <generation id> <managed root> <nginx root> <pid file> <verify 0|1> -- <ssh argv…>
set -eu
tree=$1 id=$2 mroot=$3 root=$4 pidfile=$5 verify=$6
shift 6
[ "$1" = -- ] && shift
remote="set -e
D=$mroot/generations/$id
rm -rf \$D; mkdir -p \$D; tar -x -C \$D
ln -sfn generations/$id $mroot/floor.tmp; mv -T $mroot/floor.tmp $mroot/floor-current
ln -sfn $mroot/floor-current/nginx.conf $root/nginx.conf.tmp; mv -T $root/nginx.conf.tmp $root/nginx.conf
/usr/sbin/nginx -t -q -c $root/nginx.conf
kids() { k=''; read -r k </proc/\$1/task/\$1/children 2>/dev/null || :; }
master=\$(cat $pidfile)
kids \$master; before=\" \$k \"
/usr/sbin/nginx -s reload -c $root/nginx.conf
[ $verify = 1 ] || exit 0
i=0
while [ \$i -lt 3000 ]; do
  kids \$master; fresh=0; old=0
  for p in \$k; do
    case \"\$before\" in
    *\" \$p \"*) t=''; read -r t </proc/\$p/cmdline 2>/dev/null || :; case \$t in *'shutting down'*) ;; *) old=1 ;; esac ;;
    *) fresh=1 ;;
    esac
  done
  [ \$fresh = 1 ] && [ \$old = 0 ] && exit 0
  sleep 0.02; i=\$((i + 1))
done
echo 'no new workers within 60 s' >&2; exit 1"
tar -C "$tree" -cf - . | "$@" "$remote"
