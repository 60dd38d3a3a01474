#!/usr/bin/env bash
# Makes the fixed test key material of the fuzz targets `smime_read` and `as4_inbound` with the
# openssl CLI (already done; the files are committed so that seed inputs made from them stay
# valid from run to run). Test keys only: they protect nothing.
#
#   ca.{key,pem}            brainpoolP256r1 CA, 100 years, and its CRL (crl.der, next update in
#                           100 years) at http://127.0.0.1:1/fuzz.crl
#   ours-{sig,enc}          the gateway 9900000000003 (SM-PKI naming: OU = ID, CN … EMT.MAK)
#   partner-{sig,enc}       the grid operator 9900000000011
#   mail-ec, mail-rsa       S/MIME identities (brainpoolP256r1, RSA 2048)
set -euo pipefail
cd "$(dirname "$0")"
CRL_URL=http://127.0.0.1:1/fuzz.crl
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:brainpoolP256r1 -out "$1" 2>/dev/null; }
ec ca.key
openssl req -new -x509 -key ca.key -subj "/C=DE/O=Fuzz SM-PKI/CN=Fuzz EMT CA" -days 36500 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" -out ca.pem
issue() { # name subject usage keykind
  local name=$1 subject=$2 usage=$3 kind=$4
  if [ "$kind" = rsa ]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" 2>/dev/null; else ec "$name.key"; fi
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,%s\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\ncrlDistributionPoints=URI:%s\n' "$usage" "$CRL_URL" >"$name.ext"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue ours-sig "/C=DE/O=Fuzz/OU=9900000000003/CN=ours.sig.EMT.MAK" "digitalSignature,nonRepudiation" ec
issue ours-enc "/C=DE/O=Fuzz/OU=9900000000003/CN=ours.enc.EMT.MAK" "keyAgreement" ec
issue partner-sig "/C=DE/O=Fuzz/OU=9900000000011/CN=partner.sig.EMT.MAK" "digitalSignature,nonRepudiation" ec
issue partner-enc "/C=DE/O=Fuzz/OU=9900000000011/CN=partner.enc.EMT.MAK" "keyAgreement" ec
issue mail-ec "/C=DE/O=Fuzz/OU=9900000000003/CN=mail.EMT.MAK" "digitalSignature,keyAgreement" ec
issue mail-rsa "/C=DE/O=Fuzz/OU=9900000000011/CN=mail-rsa" "digitalSignature,keyEncipherment" rsa
: >index.txt
echo 01 >crlnumber
printf '[ca]\ndefault_ca = fuzz\n[fuzz]\ndatabase = index.txt\ncrlnumber = crlnumber\ncertificate = ca.pem\nprivate_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 36500\n' >crl.cnf
openssl ca -config crl.cnf -gencrl -out crl.pem 2>/dev/null
openssl crl -in crl.pem -outform DER -out crl.der
rm -f index.txt* crlnumber* crl.cnf crl.pem ca.srl
