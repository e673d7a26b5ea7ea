// Package keystest is the conformance suite every KEK provider, and every
// fake of one, must pass: wrap and unwrap, context binding, tamper
// detection, rotation, retirement, and errors that name the key and version
// without ever containing key material.
package keystest
