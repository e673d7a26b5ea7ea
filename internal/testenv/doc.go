// Package testenv starts the real servers lifeboat's tests run against —
// versitygw (S3 with Object Lock), local-kms, a Vault dev server, etcd and
// kube-apiserver — each on free 127.0.0.1 ports in the test's temporary
// directory. It waits until each serves, hands the test its endpoint and
// credentials, stops it when the test ends, and prints its log when the
// test failed.
//
// The binaries come from bin/ (built by `make testbin` from the pinned
// modules in e2e/testbin/). A missing binary fails the test with the
// command that builds it: tests never skip because a server is missing.
//
// It is imported only by tests.
package testenv
