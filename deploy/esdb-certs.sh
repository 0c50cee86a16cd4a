#!/bin/sh
# Makes the cluster profile's certificates with es-gencert-cli, once: a CA and one
# certificate per EventStoreDB node (valid for its fixed address in docker-compose.yml).
# The CA certificate is made world-readable: ledgerd (uid 65532) verifies nodes with it.
set -eu
cd /certs
if [ -f ca/ca.crt ]; then
	echo "certificates exist; nothing to do"
	exit 0
fi
es-gencert-cli create-ca -out ./ca
for n in 1 2 3; do
	es-gencert-cli create-node -ca-certificate ./ca/ca.crt -ca-key ./ca/ca.key -out "./node$n" \
		-ip-addresses "127.0.0.1,172.30.241.1$n" -dns-names "localhost,esdb-node$n"
done
chmod 0644 ca/ca.crt
