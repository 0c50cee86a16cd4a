# syntax=docker/dockerfile:1
#
# ledgerd (and ledgerctl) as static binaries on an empty (scratch) image, running as
# non-root (uid 65532), with the CA bundle for TLS to EventStoreDB.
# The healthcheck asks ledgerd's gRPC health service with grpc-health-probe.
#
#   docker build -t stanceledger/ledgerd:dev .
#   docker run --rm -p 7070:7070 -v ledger-data:/data stanceledger/ledgerd:dev
#
# With no arguments ledgerd uses the embedded store in /data; docker-compose.yml passes
# --store esdb://… to use EventStoreDB.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags="-s -w" -o /out/bin/ledgerd ./cmd/ledgerd \
 && go build -ldflags="-s -w" -o /out/bin/ledgerctl ./cmd/ledgerctl \
 && GOBIN=/out/bin go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62 \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/bin/ /usr/local/bin/
# The data directory belongs to uid 65532 so a fresh volume is writable.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME ["/data"]
EXPOSE 7070
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/grpc-health-probe", "-addr=127.0.0.1:7070", "-service=stanceledger.v1.LedgerService"]
ENTRYPOINT ["/usr/local/bin/ledgerd", "--data", "/data", "--listen", "0.0.0.0:7070"]
