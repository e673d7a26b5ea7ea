package replica

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Evidence log keys (docs/format.md §5.4).
const chainPrefix = "evidence/seq/"

func chainKey(seq int64) string { return fmt.Sprintf("%s%010d.json", chainPrefix, seq) }

// parseSeq parses 10 decimal digits, the seq in evidence keys.
func parseSeq(s string) (int64, bool) {
	if len(s) != 10 {
		return 0, false
	}
	var n int64
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, n >= 1
}

// recordSeq returns the seq of a record's named copy,
// evidence/<seq>-<kind>-<id>.json.
func recordSeq(key string) (int64, bool) {
	name, ok := strings.CutPrefix(key, "evidence/")
	if !ok || len(name) < 11 || name[10] != '-' {
		return 0, false
	}
	return parseSeq(name[:10])
}

// EvidenceResult is what Evidence did.
type EvidenceResult struct {
	// Head is the seq of the replica's newest record afterwards.
	Head int64 `json:"head"`
	// Copied counts records copied (each as its chain object and named
	// copy, with the reports it cites).
	Copied int `json:"copied"`
}

// Evidence brings the replica's evidence log up to the primary's head
// (docs/format.md §9.1): each record after the replica's newest, in seq
// order, is checked (canonical, signed by a trusted key, its seq, its
// prev link) and copied with the reports it cites first, its chain
// object, then its named copy. The replica's newest record must equal the
// primary's of that seq, and the replica's log must not be longer: else
// the logs have forked (ErrTampered).
func (c *Copier) Evidence(ctx context.Context) (EvidenceResult, error) {
	var out EvidenceResult
	primary, err := c.chain(ctx, "primary")
	if err != nil {
		return out, err
	}
	replica, err := c.chain(ctx, "replica")
	if err != nil {
		return out, err
	}
	for i, seq := range primary {
		if seq != int64(i+1) {
			return out, &Error{StepEvidence, chainKey(int64(i + 1)), fmt.Errorf("missing from the primary's log (%s), which goes on at seq %d: %w", c.o.PrimaryName, seq, evidence.ErrTampered)}
		}
	}
	var res Result // counts objects; only Copied records matter here
	var prev []byte
	next := int64(1)
	if n := len(replica); n > 0 {
		last := replica[n-1]
		out.Head = last
		if last > int64(len(primary)) {
			return out, &Error{StepEvidence, chainKey(last), fmt.Errorf("the replica's log (%s) is longer than the primary's (%d records): someone else appended to it: %w: %w", c.o.ReplicaName, len(primary), ErrTampered, catalog.ErrVerification)}
		}
		key := chainKey(last)
		pb, err := readAll(ctx, c.o.Primary, key, maxRecord)
		if err != nil {
			return out, &Error{StepEvidence, key, fmt.Errorf("read the primary's (%s): %w", c.o.PrimaryName, err)}
		}
		r, err := c.checkRecord(pb, last, nil)
		if err != nil {
			return out, &Error{StepEvidence, key, err}
		}
		// The replica's newest record must be the primary's (has reads
		// it back whole); its named copy may be missing after an
		// interrupted copy.
		if err := c.copyBytes(ctx, &res, key, pb, r.Time.Add(c.o.EvidenceRetention)); err != nil {
			return out, &Error{StepEvidence, key, fmt.Errorf("the logs have forked: %w", err)}
		}
		if err := c.copyBytes(ctx, &res, r.Key(), pb, r.Time.Add(c.o.EvidenceRetention)); err != nil {
			return out, &Error{StepEvidence, r.Key(), err}
		}
		prev, next = pb, last+1
	}
	for seq := next; seq <= int64(len(primary)); seq++ {
		key := chainKey(seq)
		b, err := readAll(ctx, c.o.Primary, key, maxRecord)
		if err != nil {
			return out, &Error{StepEvidence, key, fmt.Errorf("read the primary's (%s): %w", c.o.PrimaryName, err)}
		}
		r, err := c.checkRecord(b, seq, prev)
		if err != nil {
			return out, &Error{StepEvidence, key, err}
		}
		retain := r.Time.Add(c.o.EvidenceRetention)
		for _, ct := range r.Citations() {
			err := c.copy(ctx, &res, ct.Key, ct.SHA256, 0, retain, func() (io.ReadCloser, error) {
				return c.o.Primary.Get(ctx, ct.Key, store.GetOptions{})
			})
			if err != nil {
				return out, &Error{StepReport, ct.Key, err}
			}
		}
		if err := c.copyBytes(ctx, &res, key, b, retain); err != nil {
			return out, &Error{StepEvidence, key, err}
		}
		if err := c.copyBytes(ctx, &res, r.Key(), b, retain); err != nil {
			return out, &Error{StepEvidence, r.Key(), err}
		}
		prev = b
		out.Head = seq
		out.Copied++
	}
	c.head = out.Head
	if out.Copied > 0 {
		c.o.Logger.Info("evidence replicated", "store", c.o.ReplicaName, "records", out.Copied, "head", out.Head)
	}
	return out, nil
}

// chain lists the seqs of the chain objects in the primary's or the
// replica's log, in order. Another object under evidence/seq/ fails.
func (c *Copier) chain(ctx context.Context, which string) ([]int64, error) {
	st, name := c.o.Primary, c.o.PrimaryName
	if which == "replica" {
		st, name = c.o.Replica, c.o.ReplicaName
	}
	var out []int64
	for info, err := range st.List(ctx, chainPrefix) {
		if err != nil {
			return nil, &Error{StepEvidence, chainPrefix, fmt.Errorf("list the %s's (%s): %w", which, name, err)}
		}
		digits, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, chainPrefix), ".json")
		seq, ok2 := parseSeq(digits)
		if !ok || !ok2 {
			return nil, &Error{StepEvidence, info.Key, fmt.Errorf("not a chain object in the %s's log (%s): %w", which, name, evidence.ErrTampered)}
		}
		out = append(out, seq)
	}
	return out, nil
}

// checkRecord checks the bytes of chain object seq: a canonical record
// signed by a trusted key, with that seq, chained onto prev (nil: do not
// check the link).
func (c *Copier) checkRecord(b []byte, seq int64, prev []byte) (evidence.Record, error) {
	r, err := evidence.ParseRecord(b)
	if err != nil {
		return r, fmt.Errorf("the primary's record: %w: %w", err, evidence.ErrTampered)
	}
	if r.Seq != seq {
		return r, fmt.Errorf("the primary's record has seq %d, its key says %d: %w", r.Seq, seq, evidence.ErrTampered)
	}
	trusted := false
	for _, k := range c.o.Trusted {
		trusted = trusted || k.Base64() == r.PublicKey
	}
	if !trusted {
		return r, fmt.Errorf("the primary's record is signed by key %s, which the replicator does not trust: %w", r.Signer, evidence.ErrTampered)
	}
	want := ""
	if seq > 1 {
		want = evidence.Hash(prev)
	}
	if prev != nil || seq == 1 {
		if r.Prev != want {
			return r, fmt.Errorf("the primary's record has prev %q, the SHA-256 of record %d is %q: %w", r.Prev, seq-1, want, evidence.ErrTampered)
		}
	}
	return r, nil
}
