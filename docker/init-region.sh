#!/bin/sh
# One-shot set-up of one region in docker/compose.yaml (service init-<region>).
#
# First run: `tongban init` into the shared node volume (PostgreSQL database, node.key, config
# with the private CA and coturn), the first admin user, optionally the sample catalogue.
# Every run: publish this node's partners.toml entry (`tongban partners self`) on the shared
# /exchange volume and add the partner regions' entries (`tongban partners add`). Running
# replicas notice the partners.toml change within seconds; nothing needs a restart.
#
# Environment: REGION, NAME, PUBLIC_HOST, PARTNER_REGIONS (space separated), DB_HOST, DB_NAME, DB_USER,
# TONGBAN_DB_PASSWORD, TONGBAN_ADMIN_PASSWORD, TURN_SECRET, TURN_HOST, LOAD_SAMPLE_CATALOG,
# TRUSTED_PROXIES (network of nginx), S3_BUCKET/S3_ENDPOINT_URL/S3_REGION (blobs in S3).
set -eu

DIR="${TONGBAN_DIR:-/var/lib/tongban/node}"
EXCHANGE="${EXCHANGE:-/exchange}"
CA_FILE="${CA_FILE:-/certs/ca.crt}"
: "${REGION:?REGION (6-digit code) is required}"
: "${NAME:?NAME is required}"
: "${PUBLIC_HOST:?PUBLIC_HOST (the name partners reach this region at) is required}"
: "${TONGBAN_DB_PASSWORD:?set TONGBAN_DB_PASSWORD in docker/.env}"

if [ ! -f "$DIR/tongban.toml" ]; then
    echo "init-region: creating node $REGION $NAME"
    tongban init \
        --region "$REGION" \
        --name "$NAME" \
        --dir "$DIR" \
        --url "https://$PUBLIC_HOST" \
        --host 0.0.0.0 \
        --port 8400 \
        --database-url "postgresql+asyncpg://${DB_USER:-tongban}:${TONGBAN_DB_PASSWORD}@${DB_HOST:-db-$REGION}:5432/${DB_NAME:-tongban}"
    {
        echo ""
        echo "[federation]"
        echo "# Partners' certificates are issued by the private CA of docker/make-certs.sh."
        echo "ca_file = \"$CA_FILE\""
        if [ -n "${TURN_SECRET:-}" ]; then
            echo ""
            echo "[inspection]"
            echo "turn_urls = [\"turn:${TURN_HOST:-localhost}:3478?transport=udp\", \"turn:${TURN_HOST:-localhost}:3478?transport=tcp\"]"
            echo "turn_secret = \"$TURN_SECRET\""
        fi
        if [ -n "${TRUSTED_PROXIES:-}" ]; then
            echo ""
            echo "[http]"
            echo "# nginx: the client address is taken from its X-Forwarded-For."
            echo "trusted_proxies = [\"$TRUSTED_PROXIES\"]"
        fi
        if [ -n "${S3_BUCKET:-}" ]; then
            echo ""
            echo "[blobs]"
            echo "# Credentials: TONGBAN_S3_ACCESS_KEY_ID / TONGBAN_S3_SECRET_ACCESS_KEY (docker/.env)."
            echo "backend = \"s3\""
            echo "bucket = \"$S3_BUCKET\""
            echo "prefix = \"$REGION/\""
            echo "region = \"${S3_REGION:-us-east-1}\""
            if [ -n "${S3_ENDPOINT_URL:-}" ]; then
                echo "endpoint_url = \"$S3_ENDPOINT_URL\""
            fi
        fi
    } >> "$DIR/tongban.toml"
    chmod 600 "$DIR/tongban.toml"  # it holds the database password
    if [ -n "${TONGBAN_ADMIN_PASSWORD:-}" ]; then
        printf '%s\n' "$TONGBAN_ADMIN_PASSWORD" | tongban users add \
            --dir "$DIR" --username admin --role admin --display-name "管理员" --password-stdin
    fi
    if [ "${LOAD_SAMPLE_CATALOG:-0}" = "1" ]; then
        samples="$(python -c 'import pathlib, node.catalog as c; print(pathlib.Path(c.__file__).parent / "samples")')"
        if [ -f "$samples/$REGION.toml" ]; then
            tongban catalog load --dir "$DIR" "$samples/$REGION.toml"
        fi
    fi
fi

# Publish our entry atomically, then take every partner's.
tongban partners self --dir "$DIR" > "$EXCHANGE/.$REGION.toml.part"
mv "$EXCHANGE/.$REGION.toml.part" "$EXCHANGE/$REGION.toml"

for other in ${PARTNER_REGIONS:-}; do
    waited=0
    while [ ! -f "$EXCHANGE/$other.toml" ]; do
        if [ "$waited" -ge 300 ]; then
            echo "init-region: no entry from partner $other after 300 s" >&2
            exit 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
    tongban partners add --dir "$DIR" "$EXCHANGE/$other.toml"
done

tongban doctor --dir "$DIR" || true  # partners may not be serving yet: report only
echo "init-region: $REGION ready"
