#!/usr/bin/env bash
# The main job, end to end on one machine: a private Dovecot + Postfix lab on
# loopback, ticketd running against it, a customer email sent over SMTP, and
# the resulting ticket and acknowledgement printed. With --keep the daemon
# stays up (until Ctrl-C) so the desk console can be tried in a browser.
set -euo pipefail
keep=
[[ "${1:-}" == "--keep" ]] && keep=1
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --release --quiet
bin="$PWD/target/release/ticketd"

dir=$(mktemp -d /tmp/ticketd-demo.XXXXXX)
cleanup() {
  [[ -n "${daemon_pid:-}" ]] && kill "$daemon_pid" 2>/dev/null || true
  bash scripts/lab.sh stop "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash scripts/lab.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/lab.env"
echo "lab: Dovecot IMAP on 127.0.0.1:$IMAP_PORT, Postfix SMTP on 127.0.0.1:$SMTP_PORT ($dir)"
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(umask 077; od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$dir/api-token")
# Alice's own token: how an admin gives an agent the console (and the API).
(umask 077; od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$dir/api-alice")

cat >"$dir/ticketd.toml" <<TOML
[store]
path = "$dir/db"
attachments_dir = "$dir/attachments"

[desk]
display_name = "Example Support"

[api]
listen = "127.0.0.1:$api_port"
token_file = "$dir/api-token"

[smtp]
host = "127.0.0.1"
port = $SMTP_PORT
tls = "none"

[[mailboxes]]
name = "support"
address = "support@example.test"
host = "127.0.0.1"
port = $IMAP_PORT
tls = "none"
password = "secret"
poll_interval = "5s"

[[agents]]
id = "agent_alice"
email = "alice@example.test"
name = "Alice"
token_file = "$dir/api-alice"
TOML

"$bin" --config "$dir/ticketd.toml" check-config
"$bin" --config "$dir/ticketd.toml" run 2>"$dir/ticketd.log" &
daemon_pid=$!

python3 - "$SMTP_PORT" "$IMAP_PORT" <<'PY'
import imaplib, smtplib, sys, time
from email.message import EmailMessage
smtp_port, imap_port = int(sys.argv[1]), int(sys.argv[2])
m = EmailMessage()
m["From"] = "Carla Customer <customer@example.test>"
m["To"] = "support@example.test"
m["Subject"] = "API Integration Issue"
m["Message-ID"] = "<demo-1@customer.example.test>"
m.set_content("Having trouble integrating the API. Getting 401 errors.\n\nCarla")
m.add_attachment(b"401 Unauthorized at /v1/validate\n", maintype="text", subtype="plain", filename="error_logs.txt")
with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
    s.send_message(m)
print("sent: customer@example.test -> support@example.test  'API Integration Issue'")
deadline = time.time() + 60
while time.time() < deadline:
    with imaplib.IMAP4("127.0.0.1", imap_port) as i:
        i.login("customer@example.test", "secret")
        i.select("INBOX")
        _, data = i.search(None, "ALL")
        ids = data[0].split()
        if ids:
            _, msg = i.fetch(ids[-1], "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT IN-REPLY-TO AUTO-SUBMITTED)])")
            print("acknowledgement in the customer's mailbox:")
            print("  " + msg[0][1].decode().strip().replace("\r\n", "\n  "))
            sys.exit(0)
    time.sleep(0.5)
sys.exit("no acknowledgement arrived within 60s")
PY

# The daemon is running: the CLI reads the desk through the local API.
echo
echo "the ticket, read from the running daemon (ticketd tickets show 1):"
"$bin" --config "$dir/ticketd.toml" tickets show 1
echo
"$bin" --config "$dir/ticketd.toml" tickets show 1 --json | tee "$dir/ticket.json"
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["attachments"][0]["url"])' "$dir/ticket.json")
echo
echo "the attachment's url serves the stored bytes:"
curl -sS --fail -H "Authorization: Bearer $(cat "$dir/api-token")" "$url" | sed 's/^/  /'
echo
echo "readiness (GET /readyz):"
curl -sS "http://127.0.0.1:$api_port/readyz" | sed 's/^/  /'
echo
echo "the desk console: http://127.0.0.1:$api_port/desk/"
echo "  sign in as Alice with her token:  $(cat "$dir/api-alice")"
echo "  or as the admin with:             $(cat "$dir/api-token")"
echo "  (an agent's token is the file named by token_file in their [[agents]] entry)"
if [[ -n "$keep" ]]; then
  echo "the daemon keeps running (log: $dir/ticketd.log); Ctrl-C stops it and the lab"
  trap 'echo; echo stopping' INT
  wait "$daemon_pid" || true
  trap - INT
else
  echo "  (run with --keep to try it: the daemon then stays up until Ctrl-C)"
fi
echo
kill -TERM "$daemon_pid" 2>/dev/null || true
wait "$daemon_pid" || true
daemon_pid=
echo
echo "daemon log:"
sed 's/^/  /' "$dir/ticketd.log"
