package awskms

import "time"

// API is the KMS client interface the provider calls, for tests that fake
// or intercept calls.
type API = kmsAPI

// SetAPI replaces p's KMS client with wrap(current client).
func SetAPI(p *Provider, wrap func(API) API) { p.client = wrap(p.client) }

// SetRotateWait sets how long a managed rotation waits for new key
// material and the pauses between polls.
func SetRotateWait(p *Provider, wait, first, longest time.Duration) {
	p.rotateWait, p.pollFirst, p.pollLongest = wait, first, longest
}
