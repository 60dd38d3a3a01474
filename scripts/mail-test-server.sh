#!/usr/bin/env bash
# Real mail servers on loopback for the e-mail transport tests (tests/email.rs):
#
#   Postfix  SMTP on 127.0.0.1:25 (plain, and STARTTLS offered), accepts mail for the domain
#            mako.test from loopback without authentication and hands it to Dovecot over LMTP;
#            an unknown local recipient is refused at RCPT TO with a 5xx (what the tests
#            classify as permanent).
#   Dovecot  IMAP on 127.0.0.1:143 (plain login allowed, loopback only; STARTTLS offered),
#            IMAPS (implicit TLS) on 127.0.0.1:993, LMTP on 127.0.0.1:24, maildir under
#            /var/lib/mako-mail/<user>/Maildir.
#
# TLS: a test CA and a server certificate for localhost / 127.0.0.1 (subjectAltName), made
# with the openssl CLI under /etc/mako-test-mail/ (ca.pem is what a client trusts as
# `ca_file`; the tests read MAKO_TEST_MAIL_CA, default /etc/mako-test-mail/ca.pem). Made once
# and kept while they are valid for at least another 30 days, so that reruns do not change
# the CA a running test trusts.
#
# Users (passwords as given): gateway / gateway-secret and partner / partner-secret, addresses
# <user>@mako.test. Plus-addressing delivers into a folder: mail to partner+t1@mako.test lands
# in partner's folder `t1` (created on delivery), so that tests running at once do not see each
# other's mail.
#
# Needs root (CI has it) and Debian's packages. Idempotent: installs only what is missing,
# rewrites the configuration and (re)starts both daemons directly (no systemd in the sandbox),
# then waits until IMAP and SMTP answer. The tests read MAKO_TEST_SMTP, MAKO_TEST_IMAP and the
# MAKO_TEST_MAIL_* variables with these values as defaults.
set -euo pipefail

DOMAIN=mako.test
MAIL_ROOT=/var/lib/mako-mail
DOVECOT_CONF=/etc/dovecot/mako-test.conf
DOVECOT_USERS=/etc/dovecot/mako-test.passwd
USERS=("gateway:gateway-secret" "partner:partner-secret")

log() { printf 'mail-test-server: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "mail-test-server: needs root (apt-get, /etc, ports 25, 143 and 993)" >&2
  exit 1
fi

# --- install -----------------------------------------------------------------------------
missing=()
command -v dovecot >/dev/null || missing+=(dovecot-imapd dovecot-lmtpd)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
command -v postfix >/dev/null || missing+=(postfix)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # Postfix asks for its setup kind; "Local only" delivers nothing to the outside.
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string $DOMAIN" | debconf-set-selections
  # Keep the packages from starting their daemons with the default configuration: we start
  # our own below. Only when no policy is in place already (containers usually have one).
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# --- TLS certificates (test CA, server certificate) ---------------------------------------
TLS_DIR=/etc/mako-test-mail
mkdir -p "$TLS_DIR"
valid_for_30_days() { [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend 2592000 >/dev/null 2>&1; }
if ! valid_for_30_days "$TLS_DIR/ca.pem" || ! valid_for_30_days "$TLS_DIR/server.pem" ||
  ! openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
  log "making the test CA and server certificate in $TLS_DIR"
  work=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
    -days 3650 -subj "/O=mako-gateway test/CN=mako test mail CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -keyout "$work/server.key" -out "$work/server.csr" \
    -subj "/O=mako-gateway test/CN=localhost" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,DNS:mail.$DOMAIN,IP:127.0.0.1" >"$work/server.ext"
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
  install -m 644 "$work/ca.pem" "$TLS_DIR/ca.pem"
  install -m 600 "$work/ca.key" "$TLS_DIR/ca.key"
  install -m 644 "$work/server.pem" "$TLS_DIR/server.pem"
  install -m 600 "$work/server.key" "$TLS_DIR/server.key"
  rm -rf "$work"
fi

# --- Dovecot -----------------------------------------------------------------------------
id vmail >/dev/null 2>&1 || useradd --system --home-dir "$MAIL_ROOT" --shell /usr/sbin/nologin vmail
mkdir -p "$MAIL_ROOT"
chown vmail:vmail "$MAIL_ROOT"

: >"$DOVECOT_USERS.tmp"
for entry in "${USERS[@]}"; do
  printf '%s:{PLAIN}%s\n' "${entry%%:*}" "${entry#*:}" >>"$DOVECOT_USERS.tmp"
done
chmod 640 "$DOVECOT_USERS.tmp"
chown root:dovecot "$DOVECOT_USERS.tmp"
mv "$DOVECOT_USERS.tmp" "$DOVECOT_USERS"

cat >"$DOVECOT_CONF" <<EOF
# Written by scripts/mail-test-server.sh: a test IMAP server on loopback, not for production.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = /run/dovecot-mako
instance_name = dovecot-mako
log_path = /var/log/dovecot-mako.log
ssl = yes
ssl_cert = <$TLS_DIR/server.pem
ssl_key = <$TLS_DIR/server.key
ssl_min_protocol = TLSv1.2
# Plain login also without TLS: loopback only, test users only.
disable_plaintext_auth = no
auth_mechanisms = plain login
# "partner@mako.test" (LMTP) and "partner" (IMAP) are the same user.
auth_username_format = %Ln
mail_location = maildir:$MAIL_ROOT/%n/Maildir
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 1
# partner+t1@mako.test is delivered into the folder t1, created on delivery.
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN $DOVECOT_USERS
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$MAIL_ROOT/%n allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 143
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = 993
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 24
  }
}
namespace inbox {
  inbox = yes
  separator = /
}
protocol imap {
  mail_max_userip_connections = 200
}
EOF

if [ -e /run/dovecot-mako/master.pid ] && kill -0 "$(cat /run/dovecot-mako/master.pid)" 2>/dev/null; then
  log "restarting dovecot"
  dovecot -c "$DOVECOT_CONF" stop || true
  for _ in $(seq 50); do
    [ -e /run/dovecot-mako/master.pid ] || break
    sleep 0.1
  done
fi
dovecot -c "$DOVECOT_CONF"

# --- Postfix -----------------------------------------------------------------------------
: >/etc/postfix/mako-test-mailboxes.tmp
for entry in "${USERS[@]}"; do
  printf '%s@%s ok\n' "${entry%%:*}" "$DOMAIN" >>/etc/postfix/mako-test-mailboxes.tmp
done
mv /etc/postfix/mako-test-mailboxes.tmp /etc/postfix/mako-test-mailboxes
[ -s /etc/mailname ] || echo "$DOMAIN" >/etc/mailname
postconf -e \
  "myhostname = mail.$DOMAIN" \
  "mydomain = $DOMAIN" \
  "myorigin = $DOMAIN" \
  "mydestination = localhost" \
  "inet_interfaces = loopback-only" \
  "inet_protocols = ipv4" \
  "mynetworks = 127.0.0.0/8" \
  "relayhost =" \
  "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination" \
  "virtual_mailbox_domains = $DOMAIN" \
  "virtual_mailbox_maps = texthash:/etc/postfix/mako-test-mailboxes" \
  "virtual_transport = lmtp:inet:127.0.0.1:24" \
  "recipient_delimiter = +" \
  "message_size_limit = 52428800" \
  "smtpd_tls_security_level = may" \
  "smtpd_tls_cert_file = $TLS_DIR/server.pem" \
  "smtpd_tls_key_file = $TLS_DIR/server.key" \
  "smtpd_tls_mandatory_protocols = >=TLSv1.2" \
  "smtpd_tls_protocols = >=TLSv1.2" \
  "smtp_tls_security_level = none" \
  "compatibility_level = 3.6"
# Unknown recipients in our domain: "550 5.1.1 ... User unknown in virtual mailbox table".
postconf -e "unknown_virtual_mailbox_reject_code = 550"

if postfix status >/dev/null 2>&1; then
  log "reloading postfix"
  postfix reload >/dev/null 2>&1
else
  postfix start >/dev/null 2>&1
fi

# --- wait until both answer ----------------------------------------------------------------
answers() { # host port expected-greeting-prefix
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && head -n 1 <&3" 2>/dev/null | grep -q "$3"
}
for _ in $(seq 100); do
  if answers 127.0.0.1 143 '^\* OK' && answers 127.0.0.1 25 '^220' &&
    openssl s_client -connect 127.0.0.1:993 -CAfile "$TLS_DIR/ca.pem" -verify_return_error \
      </dev/null >/dev/null 2>&1; then
    log "IMAP 127.0.0.1:143 (STARTTLS), IMAPS 127.0.0.1:993 and SMTP 127.0.0.1:25 (STARTTLS) answer (users: gateway, partner @ $DOMAIN; CA $TLS_DIR/ca.pem)"
    exit 0
  fi
  sleep 0.2
done
echo "mail-test-server: servers did not answer in time; dovecot log:" >&2
tail -20 /var/log/dovecot-mako.log >&2 || true
exit 1
