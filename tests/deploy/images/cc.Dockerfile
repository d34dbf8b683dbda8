# Stand-in for gcr.io/distroless/cc-debian12:nonroot where no image can be pulled: glibc,
# libgcc_s, libstdc++, CA certificates, /etc/passwd with `nonroot` (65532) and a /tmp, and no
# shell, taken from the locally bootstrapped Debian base. Testing mxgate's image on it shows
# that the image needs no shell (exec-form health check, entrypoint).
ARG BASE_IMAGE=mxgate-test/debian:bookworm
FROM ${BASE_IMAGE} AS files
RUN set -eu; mkdir -p /out/etc /out/tmp /out/home/nonroot /out/usr/share /out/usr/lib /out/usr/lib64; \
    ln -s usr/lib /out/lib; ln -s usr/lib64 /out/lib64; \
    for pkg in libc6 libgcc-s1 libstdc++6 ca-certificates; do \
      dpkg -L "$pkg" | while read -r f; do \
        if [ -f "$f" ] || [ -L "$f" ]; then case "$f" in /usr/share/doc/*|/usr/share/lintian/*|/usr/share/locale/*) ;; *) cp -a --parents "$f" /out ;; esac; fi; \
      done; \
    done; \
    cp -a --parents /etc/ssl/certs/ca-certificates.crt /out; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group; \
    chmod 1777 /out/tmp; chown 65532:65532 /out/home/nonroot

FROM scratch
COPY --from=files /out/ /
USER 65532:65532
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
