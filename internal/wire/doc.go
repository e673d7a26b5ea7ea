// Package wire turns configuration objects into implementations: a Store
// object into a store.Store, a KeyProvider into a keys.Provider, a Drill's
// scratch section into a scratch.Provider, a signing-key path into an
// evidence signer. The command line and the `serve` scheduler both call it,
// so there is one place where configuration becomes behaviour and cmd/
// holds no factories.
//
// Invariants:
//   - wire reads the process environment only through Env.Getenv, which the
//     caller sets (the CLI passes os.Getenv; tests pass a map). Providers
//     themselves never read the environment.
//   - Capabilities beyond an interface's methods are reached through small
//     optional interfaces (store.LockChecker, keys.Creator), never by
//     asserting a concrete type.
//   - Nothing here logs or returns a secret: Vault tokens are passed to the
//     provider, never formatted into an error.
package wire
