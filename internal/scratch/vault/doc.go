// Package vault runs a scratch Vault for drills: a `vault server -dev`
// process on 127.0.0.1, with the transit engine mounted, into which a
// backup's transit keys are restored (POST transit/restore/<name>) so that
// the canaries made at backup time can be decrypted and compared with the
// manifest (docs/format.md §6.3).
//
// The binary is found like the embedded scratch cluster's kube-apiserver:
// $LIFEBOAT_VAULT, else vault beside lifeboat's own executable (bin/ after
// `make build testbin`); Locate says how to build it when it is missing.
//
// The server gets a random root token (never logged or returned), passed
// in its environment (VAULT_DEV_ROOT_TOKEN_ID: /proc/<pid>/environ is
// readable by its owner only) rather than on its command line, which any
// local user can read; its own 0700 temporary directory as HOME; an
// environment without other VAULT_* variables; and a free loopback port
// (dev mode puts its cluster listener on the next port). It serves TLS
// (-dev-tls) with a CA it generates into a 0700 directory inside that one,
// and the API client trusts that CA alone (no system roots, no proxy, no
// redirects), so the server is authenticated before the token or any key
// is sent: a local process that took the port first gets neither. It
// keeps everything in memory. Stop kills it (its whole process group) and
// removes the directory; on Linux it also dies with lifeboat (the
// parent-death signal, with the child started from a goroutine locked to
// its thread for the child's lifetime, since Linux sends that signal when
// the starting thread, not the process, exits). Its output, which includes
// the root token, is kept only in memory, and shown redacted when the
// server fails to start.
//
// A restored key's latest version may exceed the recorded one (the key
// rotated between the backup reading it and backing it up); that passes,
// as the canary must still decrypt. A lower one fails.
package vault
