# The local cluster's ingress controller: the static `traefik` binary built from its Go module by
# cluster/build-tools.sh. Context: the directory holding that binary.
FROM scratch
COPY traefik /traefik
USER 65532:65532
EXPOSE 8000 9000
ENTRYPOINT ["/traefik"]
