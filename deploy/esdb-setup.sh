#!/bin/sh
# Locks the cluster profile's EventStoreDB down for the ledger (docs/eventstoredb.md,
# "Locking EventStoreDB down"). Safe to run again.
#   1. the ledger user, in group ledger-writers, with no admin or ops rights;
#   2. the default ACL of user streams: ledger-writers read and write, only $admins
#      delete or write stream metadata (metadata writes can truncate with $tb);
#   3. $all readable by ledger-writers and ledger-readers (the ledger reads its log
#      through $all; $all is a system stream, admins-only by default).
set -eu
CA=/certs/ca/ca.crt
AUTH="admin:$ESDB_ADMIN_PASSWORD"

code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" -u "$AUTH" \
	-H 'Content-Type: application/json' \
	-d "{\"loginName\":\"$LEDGER_ESDB_USER\",\"fullName\":\"Stance Ledger\",\"groups\":[\"ledger-writers\"],\"password\":\"$LEDGER_ESDB_PASSWORD\"}" \
	"$ESDB_URL/users/")
case "$code" in
201 | 409) echo "user $LEDGER_ESDB_USER: HTTP $code" ;;
*)
	echo "creating user $LEDGER_ESDB_USER failed: HTTP $code" >&2
	exit 1
	;;
esac

uuid() { cat /proc/sys/kernel/random/uuid; }

curl -fsS --cacert "$CA" -u "$AUTH" -H 'Content-Type: application/json' \
	-H 'ES-EventType: update-default-acl' -H "ES-EventId: $(uuid)" \
	-d '{"$userStreamAcl":{"$r":["$admins","ledger-writers","ledger-readers"],"$w":["$admins","ledger-writers"],"$d":"$admins","$mr":["$admins","ledger-writers"],"$mw":"$admins"},"$systemStreamAcl":{"$r":"$admins","$w":"$admins","$d":"$admins","$mr":"$admins","$mw":"$admins"}}' \
	"$ESDB_URL/streams/%24settings"

curl -fsS --cacert "$CA" -u "$AUTH" -H 'Content-Type: application/json' \
	-H "ES-EventId: $(uuid)" \
	-d '{"$acl":{"$r":["$admins","ledger-writers","ledger-readers"],"$w":"$admins","$d":"$admins","$mr":"$admins","$mw":"$admins"}}' \
	"$ESDB_URL/streams/%24all/metadata"
echo "EventStoreDB locked down for the ledger"
