#!/bin/sh
# A small private CA and one TLS server certificate per region, for docker/compose.yaml.
#
#   docker/make-certs.sh [OUT_DIR] [REGION ...]
#
# OUT_DIR defaults to docker/certs; regions default to the three of the compose file. Each
# region's certificate names <region>.tongban.test (the compose network alias of its nginx),
# and localhost / 127.0.0.1 for the published ports. Existing files are kept: running the
# script again only adds what is missing. ca.key signs certificates: keep it offline.
# In production use certificates from your usual CA and set [federation] ca_file only if it is
# a private one.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/certs}"
[ "$#" -gt 0 ] && shift
regions="${*:-430400 430523 370500}"
domain="${TONGBAN_DOMAIN:-tongban.test}"
days="${CERT_DAYS:-825}"

mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.key" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca.key"
    openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 \
        -subj "/O=Tongban/CN=Tongban private CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$out/ca.crt"
    chmod 644 "$out/ca.crt"
    echo "make-certs: CA $out/ca.crt"
fi

for region in $regions; do
    host="$region.$domain"
    if [ -f "$out/$region.crt" ]; then
        echo "make-certs: $out/$region.crt exists, kept"
        continue
    fi
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/$region.key"
    openssl req -new -key "$out/$region.key" -subj "/O=Tongban/CN=$host" -out "$out/$region.csr"
    ext="$out/$region.ext"
    cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
    openssl x509 -req -in "$out/$region.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -sha256 -days "$days" -extfile "$ext" -out "$out/$region.crt"
    cat "$out/$region.crt" "$out/ca.crt" > "$out/$region.fullchain.crt"
    rm -f "$out/$region.csr" "$ext"
    # nginx reads the key as root before dropping privileges; the certificate is public.
    chmod 600 "$out/$region.key"
    chmod 644 "$out/$region.crt" "$out/$region.fullchain.crt"
    echo "make-certs: $host -> $out/$region.crt"
done
