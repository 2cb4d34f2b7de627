# The pod sandbox image of the local node (containerd's sandbox_image): the static `pause` built
# from pause.c next to this file. Context: a directory holding that binary.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
