// Package faulty wraps a store.Store to inject faults in tests: Puts whose
// stream breaks after some bytes, Gets and Stats and Deletes that fail,
// reads that return a flipped bit or end early. Fault injection lives in
// this wrapper rather than in flags of the production stores.
//
// Faults are armed per key with a path.Match pattern ("*" does not cross
// "/": "backups/*/manifest.json" matches every manifest) and stay armed
// until Disarm. With no fault armed the wrapper passes every call through
// unchanged, and it passes the storetest conformance suite. A Store is
// safe for concurrent use, including arming and disarming while calls run;
// a call sees the faults armed when it starts. Arming a fault with a
// malformed pattern, a negative count or offset, or a nil error panics.
package faulty
