#!/usr/bin/env bash
# Makes the TLS test assets (CAs, server and client certificates, broken pairs) in $1 with the
# openssl CLI, so no key material is checked in. Used by the unit tests (tests/tls_test_certs.cpp)
# and usable by e2e tests and benchmarks. Serials are fixed so tests can tell which one was served.
set -euo pipefail

out=${1:?usage: tls_test_certs.sh OUTDIR}
mkdir -p "$out"
cd "$out"

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# ca NAME SUBJECT: a self-signed ECDSA CA.
ca() {
  ec_key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -set_serial 1 -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME KEYTYPE SERIAL SUBJECT SAN DAYS ISSUER [EKU]: a certificate signed by ISSUER.
# SAN "" means no subjectAltName (the CN is the only name).
leaf() {
  local name=$1 keytype=$2 serial=$3 subj=$4 san=$5 days=$6 issuer=$7 eku=${8:-serverAuth}
  "${keytype}_key" "$name.key"
  local ext=(-addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=$eku")
  [[ -n $san ]] && ext+=(-addext "subjectAltName=$san")
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  openssl req -x509 -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -days "$days" \
    -set_serial "$serial" -copy_extensions none "${ext[@]}" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

# dated NAME SERIAL START END: an ECDSA server certificate with a validity window of our choice
# (openssl ca is the only 3.0 command that takes explicit dates).
dated() {
  local name=$1 serial=$2 start=$3 end=$4
  mkdir -p ca-db
  : >ca-db/index.txt
  printf '%s\n' "${serial#0x}" >ca-db/serial
  cat >ca-db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
EOF
  ec_key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$name.test" \
    -addext "subjectAltName=DNS:$name.test" -out "$name.csr"
  openssl ca -batch -notext -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key \
    -startdate "$start" -enddate "$end" -in "$name.csr" -out "$name.pem" 2>/dev/null
  rm -rf "$name.csr" ca-db
}

utc() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

ca ca "sluice test CA"
ca other-ca "another test CA"
# An intermediate under ca, so chains are exercised: ecdsa.pem carries leaf + intermediate.
ec_key int.key
openssl req -new -key int.key -subj "/CN=sluice test intermediate" -out int.csr
openssl req -x509 -in int.csr -CA ca.pem -CAkey ca.key -days 3650 -set_serial 2 \
  -copy_extensions none -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out int.pem 2>/dev/null
rm -f int.csr

# The default pair: RSA, exact names.
leaf rsa rsa 0x1001 "/CN=example.test" "DNS:example.test,DNS:www.example.test" 365 ca
# ECDSA P-256 under the intermediate: a wildcard plus an exact name.
leaf ecdsa-leaf ec 0x1002 "/CN=wild.test" "DNS:*.wild.test,DNS:api.example.test" 365 int
cat ecdsa-leaf.pem int.pem >ecdsa.pem
mv ecdsa-leaf.key ecdsa.key
rm -f ecdsa-leaf.pem
# Same names as rsa.pem with an ECDSA key: served to clients that accept ECDSA.
leaf example-ec ec 0x1003 "/CN=example.test" "DNS:example.test,DNS:www.example.test" 365 ca
# No subjectAltName: the CN is the name.
leaf cn-only ec 0x1004 "/CN=cn-only.test" "" 365 ca
# The CN is ignored when a subjectAltName exists.
leaf san-hides-cn ec 0x1005 "/CN=hidden.test" "DNS:shown.test" 365 ca
# An IP address in the SAN, for upstreams reached by address.
leaf ip ec 0x1006 "/CN=127.0.0.1" "IP:127.0.0.1" 365 ca
# An etcd member's: etcd's gateway dials its own gRPC server with it, so it is a client's too.
leaf etcd-server ec 0x100a "/CN=127.0.0.1" "IP:127.0.0.1" 365 ca serverAuth,clientAuth
# Expiring within 14 days: a warning, not an error.
leaf soon ec 0x1007 "/CN=soon.test" "DNS:soon.test" 5 ca
# The same names as rsa.pem, signed by the other CA (a wrong-CA upstream).
leaf other rsa 0x1008 "/CN=example.test" "DNS:example.test,DNS:www.example.test" 365 other-ca
# Wildcards RFC 6125 does not allow: over a single label, and partial. Match nothing.
leaf bad-wild ec 0x1009 "/CN=bad-wild" "DNS:*.test,DNS:w*.partial.test" 365 ca
# mTLS client certificates: one from our CA, one from the other.
leaf client ec 0x2001 "/CN=sluice client" "" 365 ca clientAuth
leaf other-client ec 0x2002 "/CN=stranger" "" 365 other-ca clientAuth

dated expired 0x3001 "$(utc '-30 days')" "$(utc '-1 day')"
dated not-yet 0x3002 "$(utc '+1 day')" "$(utc '+30 days')"

# Broken assets.
rsa_key wrong.key                                       # matches no certificate
echo "this is not a certificate" >not-pem.pem
openssl x509 -in rsa.pem -outform DER -out rsa.der      # a certificate, but DER
openssl pkcs8 -topk8 -in ecdsa.key -passout pass:secret -out encrypted.key
: >empty.pem
echo ok >done
