package evidence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// StoreLike is what the evidence log and reports need of a store: a
// write-once Put (store.ErrExists when the key is taken), a Get that checks
// the recorded digest, and a List in key order. Every store.Store is one.
type StoreLike interface {
	Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error)
	Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error]
}

var _ StoreLike = store.Store(nil)

// DefaultRetention is how long records and reports are retained unless
// WithRetention says otherwise: 2190 days, the six years of
// §164.316(b)(2)(i).
const DefaultRetention = 2190 * 24 * time.Hour

// maxAppendAttempts bounds how often Append starts over when another
// writer takes the seq it chose.
const maxAppendAttempts = 16

// Option configures a Log or WriteReport.
type Option func(*options)

type options struct {
	retention time.Duration
	trusted   []PublicKey
	logger    *slog.Logger
}

// WithRetention sets how long written objects are retained, counted from
// the record's time (a report's finished time). Zero or less keeps
// DefaultRetention.
func WithRetention(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.retention = d
		}
	}
}

// WithTrustedKeys adds keys that Append accepts as the signer of the
// newest record, besides the Log's own signer: the keys of earlier signers
// after the signing key was replaced.
func WithTrustedKeys(keys ...PublicKey) Option {
	return func(o *options) { o.trusted = append(o.trusted, keys...) }
}

// WithLogger sets the logger; nil discards log lines.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

func buildOptions(opts []Option) options {
	o := options{retention: DefaultRetention}
	for _, fn := range opts {
		fn(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Log is the hash-chained evidence log in a store (docs/format.md §5.4).
// It is safe for concurrent use, also with Logs in other processes on the
// same store.
type Log struct {
	st     StoreLike
	signer *Signer
	now    func() time.Time
	opts   options

	// mu serialises this Log's appends; other writers are handled by the
	// chain object's write-once Put.
	mu sync.Mutex
}

// NewLog returns the evidence log in st. signer signs appended records; it
// may be nil for a Log that only verifies. now is the clock (nil:
// time.Now).
func NewLog(st StoreLike, signer *Signer, now func() time.Time, opts ...Option) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{st: st, signer: signer, now: now, opts: buildOptions(opts)}
}

// Append signs rec and appends it to the log. The caller sets Kind, ID,
// Outcome, Subject and HIPAA; Append sets Format, Seq, Prev, Time, Signer,
// PublicKey and Signature, and returns the record as stored.
//
// Before chaining onto the newest record, Append checks it (canonical
// form, fields, signature by the Log's signer or a key given with
// WithTrustedKeys) and writes its named copy if an interrupted append left
// it missing. When another writer takes the seq first, Append reads the
// new head and tries again, a bounded number of times.
//
// If the chain object was written but the named copy could not be, the
// record is committed: Append returns it together with the error.
func (l *Log) Append(ctx context.Context, rec Record) (Record, error) {
	fail := func(err error) (Record, error) {
		return Record{}, fmt.Errorf("evidence: append %s %s: %w", rec.Kind, rec.ID, err)
	}
	if l.signer == nil {
		return fail(errors.New("the log has no signer"))
	}
	if err := rec.validateContent(); err != nil {
		return fail(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for range maxAppendAttempts {
		head, headData, err := l.head(ctx)
		if err != nil {
			return fail(err)
		}
		r := rec
		r.Format = RecordFormat
		r.Seq, r.Prev = 1, ""
		if head != nil {
			r.Seq, r.Prev = head.Seq+1, Hash(headData)
		}
		r.Time = l.now().UTC()
		if err := r.validate(); err != nil {
			return fail(err)
		}
		signed, data, err := l.signer.signRecord(r)
		if err != nil {
			return fail(err)
		}
		retain := signed.Time.Add(l.opts.retention)
		ck := chainKey(signed.Seq)
		if err := l.put(ctx, ck, data, retain); err != nil {
			if errors.Is(err, store.ErrExists) {
				l.opts.logger.Debug("evidence: seq taken by another writer; retrying", "seq", signed.Seq, "kind", signed.Kind, "id", signed.ID)
				continue
			}
			return fail(err)
		}
		if err := l.putCopy(ctx, signed.Key(), ck, data, retain); err != nil {
			return signed, fmt.Errorf("evidence: append %s %s: committed as %s, but: %w", rec.Kind, rec.ID, ck, err)
		}
		l.opts.logger.Info("evidence record appended", "seq", signed.Seq, "kind", signed.Kind, "id", signed.ID, "outcome", signed.Outcome, "key", signed.Key())
		return signed, nil
	}
	return fail(fmt.Errorf("other writers took the next seq %d times in a row", maxAppendAttempts))
}

// head reads and checks the newest record. It returns nil for an empty
// log.
func (l *Log) head(ctx context.Context) (*Record, []byte, error) {
	var last string
	for info, err := range l.st.List(ctx, chainPrefix) {
		if err != nil {
			return nil, nil, fmt.Errorf("find the newest record: %w", err)
		}
		last = info.Key
	}
	if last == "" {
		return nil, nil, nil
	}
	seq, ok := parseChainKey(last)
	if !ok {
		return nil, nil, &VerifyError{Object: last, Problem: "unexpected object: not a chain object key (evidence/seq/<10 digits>.json)"}
	}
	data, err := l.read(ctx, last)
	if err != nil {
		return nil, nil, fmt.Errorf("read the newest record: %w", err)
	}
	r, pub, err := parseRecord(data)
	if err != nil {
		return nil, nil, problem(last, err)
	}
	if r.Seq != seq {
		return nil, nil, &VerifyError{Object: last, Field: "seq", Problem: fmt.Sprintf("%d, but the key says %d", r.Seq, seq)}
	}
	if !pub.Equal(l.signer.pub) && !containsKey(l.opts.trusted, pub) {
		return nil, nil, &VerifyError{Object: last, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which is neither this log's signer (%s) nor a key it was told to trust", r.Signer, l.signer.KeyID())}
	}
	if err := l.putCopy(ctx, r.Key(), last, data, r.Time.Add(l.opts.retention)); err != nil {
		return nil, nil, fmt.Errorf("named copy of the newest record: %w", err)
	}
	return &r, data, nil
}

// read returns an object's bytes. A digest mismatch reported by the store
// is a VerifyError.
func (l *Log) read(ctx context.Context, key string) ([]byte, error) {
	return readObject(ctx, l.st, key, maxRecordSize)
}

func readObject(ctx context.Context, st StoreLike, key string, limit int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		if errors.Is(err, store.ErrIntegrity) {
			return nil, &VerifyError{Object: key, Problem: "the stored bytes do not match the digest the store recorded", Err: err}
		}
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		if errors.Is(err, store.ErrIntegrity) {
			return nil, &VerifyError{Object: key, Problem: "the stored bytes do not match the digest the store recorded", Err: err}
		}
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &VerifyError{Object: key, Problem: fmt.Sprintf("larger than %d bytes", limit)}
	}
	return data, nil
}

func (l *Log) put(ctx context.Context, key string, data []byte, retain time.Time) error {
	_, err := l.st.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: retain, SHA256: Hash(data), Size: int64(len(data))})
	return err
}

// putCopy writes data under key unless an object with exactly these bytes
// is there already.
func (l *Log) putCopy(ctx context.Context, key, of string, data []byte, retain time.Time) error {
	err := l.put(ctx, key, data, retain)
	if !errors.Is(err, store.ErrExists) {
		return err
	}
	have, rerr := l.read(ctx, key)
	if rerr != nil {
		return rerr
	}
	if !bytes.Equal(have, data) {
		return &VerifyError{Object: key, Problem: fmt.Sprintf("exists with other bytes than its chain object %s", of)}
	}
	return nil
}

// VerifyResult describes a verified log (or the part verified before a
// problem).
type VerifyResult struct {
	// Records is the number of records verified.
	Records int `json:"records"`
	// Head is the newest verified record. An auditor who keeps it detects
	// a later loss of records, which the chain alone cannot show.
	Head *Head `json:"head,omitempty"`
	// FirstTime is the time of record 1.
	FirstTime time.Time `json:"firstTime,omitzero"`
	// Signers are the key IDs that signed records, in order of first use.
	Signers []string `json:"signers"`
	// TrustedKeys tells whether the signers were checked against keys the
	// caller trusts (origin); when false, only that record 1's key signed
	// every record was checked (integrity).
	TrustedKeys bool `json:"trustedKeys"`
	// Kinds and Outcomes count the records by kind and by outcome.
	Kinds    map[string]int `json:"kinds"`
	Outcomes map[string]int `json:"outcomes"`
	// Reports is the number of report objects (report.json, report.md,
	// report.html) that records cite and that were read back and matched
	// the SHA-256 their record gives.
	Reports int `json:"reports"`
	// Warnings are conditions that are not tampering, such as the newest
	// record's named copy missing after an interrupted append.
	Warnings []string `json:"warnings,omitempty"`
}

// Head identifies the newest record of a log.
type Head struct {
	Seq    int64     `json:"seq"`
	Key    string    `json:"key"`
	SHA256 string    `json:"sha256"`
	Time   time.Time `json:"time"`
}

// Verify checks the whole log (docs/format.md §5.5): every record's
// canonical form, fields, signature and signer, consecutive seqs, the prev
// links, the named copies, and that nothing else is under evidence/. With
// trustedKeys, every record must be signed by one of them; without, by the
// key of record 1. It stops at the first problem and returns a
// *VerifyError (matching ErrTampered) naming the object, the field and the
// problem, with the result so far. An empty log verifies with zero records.
func (l *Log) Verify(ctx context.Context, trustedKeys ...PublicKey) (VerifyResult, error) {
	res := VerifyResult{Signers: []string{}, TrustedKeys: len(trustedKeys) > 0, Kinds: map[string]int{}, Outcomes: map[string]int{}}
	fail := func(err error) (VerifyResult, error) {
		return res, fmt.Errorf("evidence: verify: %w", err)
	}
	keys := map[string]bool{}
	for info, err := range l.st.List(ctx, evidencePrefix) {
		if err != nil {
			return fail(fmt.Errorf("list %s: %w", evidencePrefix, err))
		}
		keys[info.Key] = true
	}
	var (
		first       PublicKey
		prevHash    string
		prevKey     string
		missingCopy string // named copy of the previous record, missing
		cited       []citation
	)
	for seq := int64(1); seq <= maxSeq; seq++ {
		ck := chainKey(seq)
		if !keys[ck] {
			break
		}
		if missingCopy != "" {
			return fail(&VerifyError{Object: missingCopy, Problem: "missing: the named copy of a record that is not the newest was removed"})
		}
		data, err := l.read(ctx, ck)
		if err != nil {
			return fail(err)
		}
		r, pub, err := parseRecord(data)
		if err != nil {
			return fail(problem(ck, err))
		}
		if r.Seq != seq {
			return fail(&VerifyError{Object: ck, Field: "seq", Problem: fmt.Sprintf("%d, but the record is at seq %d of the chain (records reordered or renamed)", r.Seq, seq)})
		}
		switch {
		case len(trustedKeys) > 0:
			if !containsKey(trustedKeys, pub) {
				return fail(&VerifyError{Object: ck, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which is not one of the trusted keys (%s)", r.Signer, keyIDs(trustedKeys))})
			}
		case first.IsZero():
			first = pub
		case !pub.Equal(first):
			return fail(&VerifyError{Object: ck, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, but record 1 by key %s; give the trusted keys to verify a log signed by several", r.Signer, KeyID(first))})
		}
		if r.Prev != prevHash {
			return fail(&VerifyError{Object: ck, Field: "prev", Problem: fmt.Sprintf("%q, but the SHA-256 of %s is %q: the previous record was changed or replaced", r.Prev, prevKey, prevHash)})
		}
		named := r.Key()
		if keys[named] {
			copyData, err := l.read(ctx, named)
			if err != nil {
				return fail(err)
			}
			if !bytes.Equal(copyData, data) {
				if _, _, err := parseRecord(copyData); err != nil {
					return fail(problem(named, err))
				}
				return fail(&VerifyError{Object: named, Problem: fmt.Sprintf("differs from its chain object %s from byte %d on", ck, firstDifference(copyData, data))})
			}
		} else {
			missingCopy = named
		}
		delete(keys, ck)
		delete(keys, named)

		res.Records++
		if seq == 1 {
			res.FirstTime = r.Time
		}
		if !slices.Contains(res.Signers, r.Signer) {
			res.Signers = append(res.Signers, r.Signer)
		}
		res.Kinds[r.Kind]++
		res.Outcomes[r.Outcome]++
		cited = append(cited, citations(ck, r)...)
		prevHash, prevKey = Hash(data), ck
		res.Head = &Head{Seq: seq, Key: named, SHA256: prevHash, Time: r.Time}
	}
	if missingCopy != "" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s is missing: the newest record's named copy was not written (an interrupted append; the next append writes it)", missingCopy))
	}
	if len(keys) > 0 {
		rest := make([]string, 0, len(keys))
		for k := range keys {
			rest = append(rest, k)
		}
		slices.Sort(rest)
		return fail(leftover(rest[0], res.Records))
	}
	for _, c := range cited {
		data, err := readObject(ctx, l.st, c.Key, maxReportSize)
		if errors.Is(err, store.ErrNotFound) {
			return fail(&VerifyError{Object: c.Key, Problem: fmt.Sprintf("missing: %s cites it with SHA-256 %s", c.by, c.SHA256)})
		}
		if err != nil {
			return fail(err)
		}
		if got := Hash(data); got != c.SHA256 {
			return fail(&VerifyError{Object: c.Key, Problem: fmt.Sprintf("SHA-256 %s, but %s cites it with %s: the report was changed", got, c.by, c.SHA256)})
		}
		res.Reports++
	}
	return res, nil
}

// Citation is an object a record cites by SHA-256.
type Citation struct{ Key, SHA256 string }

// citation is a Citation and the record that makes it.
type citation struct {
	Citation
	by string
}

// Citations returns the report objects the record cites in
// subject.report: report.json and its renderings (docs/format.md §5.3).
// Citations of objects outside reports/ are left out: a record cannot make
// a verifier (or a replication) read the rest of the store.
func (r Record) Citations() []Citation {
	rep, ok := r.Subject["report"].(map[string]any)
	if !ok {
		return nil
	}
	var out []Citation
	add := func(m map[string]any) {
		key, _ := m["key"].(string)
		sum, _ := m["sha256"].(string)
		if strings.HasPrefix(key, reportsPrefix) && len(sum) == 64 {
			out = append(out, Citation{Key: key, SHA256: sum})
		}
	}
	add(rep)
	rs, _ := rep["renderings"].([]any)
	for _, x := range rs {
		if m, ok := x.(map[string]any); ok {
			add(m)
		}
	}
	return out
}

func citations(recordKey string, r Record) []citation {
	var out []citation
	for _, c := range r.Citations() {
		out = append(out, citation{Citation: c, by: recordKey})
	}
	return out
}

// leftover explains an object under evidence/ that is not part of the
// chain, the chain having ended after record last.
func leftover(key string, last int) error {
	next := chainKey(int64(last) + 1)
	if seq, ok := parseChainKey(key); ok {
		return &VerifyError{Object: key, Problem: fmt.Sprintf("record seq %d follows a gap: %s (seq %d) is missing", seq, next, last+1)}
	}
	name := strings.TrimPrefix(key, evidencePrefix)
	if len(name) > 11 && name[10] == '-' && strings.HasSuffix(name, ".json") && !strings.Contains(name, "/") {
		if seq, ok := parseSeqDigits(name[:10]); ok {
			if seq > int64(last) {
				return &VerifyError{Object: key, Problem: fmt.Sprintf("named copy of seq %d, but the chain ends at seq %d: %s is missing", seq, last, next)}
			}
			return &VerifyError{Object: key, Problem: fmt.Sprintf("not the named copy of the record at seq %d (%s): a record that is not part of the chain", seq, chainKey(seq))}
		}
	}
	return &VerifyError{Object: key, Problem: "unexpected object under " + evidencePrefix}
}

func firstDifference(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func keyIDs(keys []PublicKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = KeyID(k)
	}
	return strings.Join(ids, ", ")
}

func containsKey(keys []PublicKey, pub PublicKey) bool {
	for _, k := range keys {
		if pub.Equal(k) {
			return true
		}
	}
	return false
}

// Backwards reads the newest records, newest first, calling fn with each
// until fn returns false or limit records were read. Each record must
// parse and carry a valid signature by the Log's signer or a trusted key;
// the chain links are not checked (that is Verify's job), so what it
// returns is fit for status, not for audit. The `serve` scheduler rebuilds
// its schedules' last outcomes with it.
func (l *Log) Backwards(ctx context.Context, limit int, fn func(Record) bool) error {
	var keys []string
	for info, err := range l.st.List(ctx, chainPrefix) {
		if err != nil {
			return fmt.Errorf("evidence: list the log: %w", err)
		}
		keys = append(keys, info.Key)
	}
	for i := len(keys) - 1; i >= 0 && len(keys)-1-i < limit; i-- {
		data, err := l.read(ctx, keys[i])
		if err != nil {
			return fmt.Errorf("evidence: read %s: %w", keys[i], err)
		}
		r, pub, err := parseRecord(data)
		if err != nil {
			return problem(keys[i], err)
		}
		if chainKey(r.Seq) != keys[i] {
			// A genuine record copied under another seq (an old pass
			// replayed as the newest) must not read as that seq's.
			return &VerifyError{Object: keys[i], Field: "seq", Problem: fmt.Sprintf("the record is seq %d, not what its key names", r.Seq)}
		}
		trusted := containsKey(l.opts.trusted, pub)
		if l.signer != nil && pub.Equal(l.signer.pub) {
			trusted = true
		}
		if !trusted {
			return &VerifyError{Object: keys[i], Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which this log does not trust", r.Signer)}
		}
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// OfKind returns every record of kind (from the named copies, whose keys
// name the kind), oldest first. Each must parse, carry a valid signature
// and name its own key; with the Log's signer or trusted keys it must be
// signed by one of them (origin checked), without any only its signature's
// validity is (Trusted reports which). The chain is not checked: that is
// Verify's job.
func (l *Log) OfKind(ctx context.Context, kind string) ([]Record, error) {
	infix := "-" + kind + "-"
	var keys []string
	for info, err := range l.st.List(ctx, evidencePrefix) {
		if err != nil {
			return nil, fmt.Errorf("evidence: list the log: %w", err)
		}
		name := strings.TrimPrefix(info.Key, evidencePrefix)
		if strings.HasPrefix(info.Key, chainPrefix) || len(name) < 11 || !strings.HasPrefix(name[10:], infix) {
			continue
		}
		keys = append(keys, info.Key)
	}
	var out []Record
	for _, key := range keys {
		data, err := l.read(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("evidence: read %s: %w", key, err)
		}
		r, pub, err := parseRecord(data)
		if err != nil {
			return nil, problem(key, err)
		}
		if r.Kind != kind || r.Key() != key {
			return nil, &VerifyError{Object: key, Field: "kind", Problem: fmt.Sprintf("the record is %s %s at seq %d, not what its key names", r.Kind, r.ID, r.Seq)}
		}
		if l.Trusted() && !containsKey(l.opts.trusted, pub) && (l.signer == nil || !pub.Equal(l.signer.pub)) {
			return nil, &VerifyError{Object: key, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which this log does not trust", r.Signer)}
		}
		out = append(out, r)
	}
	return out, nil
}

// Trusted reports whether the Log checks who signed what it reads: it has
// a signer or trusted keys.
func (l *Log) Trusted() bool { return l.signer != nil || len(l.opts.trusted) > 0 }

// Record returns the record stored under key (a named copy, as
// Record.Key gives it). It must parse, carry a valid signature by the
// Log's signer or a trusted key, and name key as its own, else Record
// fails with a VerifyError naming the object. The chain is not checked
// (Verify's job).
func (l *Log) Record(ctx context.Context, key string) (Record, error) {
	if !strings.HasPrefix(key, evidencePrefix) || strings.HasPrefix(key, chainPrefix) {
		return Record{}, &VerifyError{Object: key, Problem: "not the key of a record's named copy"}
	}
	data, err := l.read(ctx, key)
	if err != nil {
		return Record{}, fmt.Errorf("evidence: read %s: %w", key, err)
	}
	r, pub, err := parseRecord(data)
	if err != nil {
		return Record{}, problem(key, err)
	}
	if r.Key() != key {
		return Record{}, &VerifyError{Object: key, Field: "id", Problem: fmt.Sprintf("the record is %s %s at seq %d, not what its key names", r.Kind, r.ID, r.Seq)}
	}
	if !containsKey(l.opts.trusted, pub) && (l.signer == nil || !pub.Equal(l.signer.pub)) {
		return Record{}, &VerifyError{Object: key, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which this log does not trust", r.Signer)}
	}
	return r, nil
}

// Find returns the records of kind about id (their keys name both, so one
// listing finds them), oldest first. Each must parse and carry a valid
// signature by the Log's signer or a trusted key, else Find fails with a
// VerifyError naming the object; the chain is not checked (Verify's job).
func (l *Log) Find(ctx context.Context, kind, id string) ([]Record, error) {
	suffix := "-" + kind + "-" + id + ".json"
	var keys []string
	for info, err := range l.st.List(ctx, evidencePrefix) {
		if err != nil {
			return nil, fmt.Errorf("evidence: list the log: %w", err)
		}
		if strings.HasPrefix(info.Key, chainPrefix) || !strings.HasSuffix(info.Key, suffix) {
			continue
		}
		keys = append(keys, info.Key)
	}
	var out []Record
	for _, key := range keys {
		data, err := l.read(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("evidence: read %s: %w", key, err)
		}
		r, pub, err := parseRecord(data)
		if err != nil {
			return nil, problem(key, err)
		}
		if r.Kind != kind || r.ID != id || r.Key() != key {
			return nil, &VerifyError{Object: key, Field: "id", Problem: fmt.Sprintf("the record is %s %s at seq %d, not what its key names", r.Kind, r.ID, r.Seq)}
		}
		trusted := containsKey(l.opts.trusted, pub)
		if l.signer != nil && pub.Equal(l.signer.pub) {
			trusted = true
		}
		if !trusted {
			return nil, &VerifyError{Object: key, Field: "publicKey", Problem: fmt.Sprintf("signed by key %s, which this log does not trust", r.Signer)}
		}
		out = append(out, r)
	}
	return out, nil
}
