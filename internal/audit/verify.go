package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// DefaultMaxGap is the longest quiet time between segments that `audit
// verify` does not report.
const DefaultMaxGap = 15 * time.Minute

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Log is the AuditLog's name.
	Log string
	// From and To, when set, limit the segments whose bytes are read to
	// those with events in the range; the chains are walked whole.
	From, To time.Time
	// MaxGap is the longest gap not reported; default DefaultMaxGap.
	MaxGap time.Duration
	// Trusted are the keys records must be signed by. None: each stream's
	// first record's key must have signed the whole stream, and the result
	// says that origin was not checked.
	Trusted []evidence.PublicKey
}

// Gap is a quiet time between two segments longer than MaxGap.
type Gap struct {
	After  string        `json:"after"`
	Before string        `json:"before"`
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Length time.Duration `json:"lengthNs"`
}

// StreamResult is what Verify found in one stream.
type StreamResult struct {
	Stream string `json:"stream"`
	// Segments and Events count the committed segments walked.
	Segments int64 `json:"segments"`
	Events   int64 `json:"events"`
	// SegmentsRead counts those whose bytes were read and checked.
	SegmentsRead int64     `json:"segmentsRead"`
	First        time.Time `json:"firstEvent,omitzero"`
	Last         time.Time `json:"lastEvent,omitzero"`
	// Head is the newest record: keep its key and SHA-256 to detect a
	// truncation at the next audit.
	Head     *Head    `json:"head,omitempty"`
	Gaps     []Gap    `json:"gaps,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Problem is the first failure, naming the object; "" when the
	// stream verified.
	Problem string `json:"problem,omitempty"`
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Log     string         `json:"log"`
	Streams []StreamResult `json:"streams"`
	// OriginChecked is false when no trusted key was given.
	OriginChecked bool `json:"originChecked"`
	// Problems are failures outside any stream's chain (unknown objects).
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether everything verified.
func (r VerifyResult) OK() bool {
	if len(r.Problems) > 0 {
		return false
	}
	for _, s := range r.Streams {
		if s.Problem != "" {
			return false
		}
	}
	return true
}

// listing is an AuditLog's objects in a store, by stream.
type listing struct {
	chain    map[string]map[int64]bool              // stream → seqs
	segments map[string]map[string]map[string]int64 // stream → segment → object name under it → size
	other    []string
}

func listLog(ctx context.Context, st Store, log string) (*listing, error) {
	l := &listing{chain: map[string]map[int64]bool{}, segments: map[string]map[string]map[string]int64{}}
	prefix := logPrefix(log)
	for obj, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		rest := strings.TrimPrefix(obj.Key, prefix)
		parts := strings.SplitN(rest, "/", 4)
		switch {
		case len(parts) == 3 && parts[1] == "chain":
			seq, ok := parseRecordKey(chainPrefix(log, parts[0]), obj.Key)
			if !ok {
				l.other = append(l.other, obj.Key)
				continue
			}
			if l.chain[parts[0]] == nil {
				l.chain[parts[0]] = map[int64]bool{}
			}
			l.chain[parts[0]][seq] = true
		case len(parts) == 4 && parts[1] == "segments":
			s := l.segments[parts[0]]
			if s == nil {
				s = map[string]map[string]int64{}
				l.segments[parts[0]] = s
			}
			if s[parts[2]] == nil {
				s[parts[2]] = map[string]int64{}
			}
			s[parts[2]][parts[3]] = obj.Size
		default:
			l.other = append(l.other, obj.Key)
		}
	}
	return l, nil
}

// Verify checks every stream of an AuditLog (docs/format.md §8.5). A
// problem found is reported in the result (naming the object); the error
// is for a store that cannot be read at all.
func Verify(ctx context.Context, st Store, o VerifyOptions) (VerifyResult, error) {
	if o.MaxGap <= 0 {
		o.MaxGap = DefaultMaxGap
	}
	res := VerifyResult{Log: o.Log, OriginChecked: len(o.Trusted) > 0}
	l, err := listLog(ctx, st, o.Log)
	if err != nil {
		return res, err
	}
	for _, k := range l.other {
		res.Problems = append(res.Problems, fmt.Sprintf("%s: not an object of the audit log layout (docs/format.md §8.1)", k))
	}
	streams := make([]string, 0, len(l.chain))
	for s := range l.chain {
		streams = append(streams, s)
	}
	for s := range l.segments {
		if l.chain[s] == nil {
			streams = append(streams, s)
		}
	}
	slices.Sort(streams)
	for _, s := range streams {
		sr, key := verifyStream(ctx, st, o, l, s)
		// Without trusted keys, the first key seen must have signed every
		// stream: a stream planted under another key fails.
		if len(o.Trusted) == 0 && !key.IsZero() {
			o.Trusted = []evidence.PublicKey{key}
		}
		res.Streams = append(res.Streams, sr)
	}
	return res, ctx.Err()
}

// verifyStream walks one stream; it returns the key trusted on first use
// when o.Trusted is empty.
func verifyStream(ctx context.Context, st Store, o VerifyOptions, l *listing, stream string) (sr StreamResult, firstKey evidence.PublicKey) {
	sr = StreamResult{Stream: stream}
	trusted := o.Trusted
	cited := map[string]bool{}
	var prev *Head
	seqs := l.chain[stream]
	filter := Filter{From: o.From, To: o.To}
	last := int64(0)
	for seqs[last+1] {
		last++
	}
	seq := last + 1 // the first seq without a record
	if len(trusted) == 0 && last >= 1 {
		// Trust on first use: the first record's key (Verify then holds
		// every other stream to it).
		data, err := readAll(ctx, st, recordKey(o.Log, stream, 1), evidence.MaxAuditSegmentRecordSize)
		if err != nil {
			sr.Problem = err.Error()
			return sr, firstKey
		}
		pub, err := evidence.AuditSegmentPublicKey(data)
		if err != nil {
			sr.Problem = fmt.Sprintf("%s: %v: %v", recordKey(o.Log, stream, 1), ErrTampered, err)
			return sr, firstKey
		}
		trusted, firstKey = []evidence.PublicKey{pub}, pub
	}
	problem := func(format string, args ...any) bool {
		sr.Problem = fmt.Sprintf(format, args...)
		return false
	}
	werr := walkRecords(ctx, st, o.Log, stream, last, trusted, func(seq int64, f fetched) bool {
		if f.err != nil {
			return problem("%v", f.err)
		}
		rec, sum := f.rec, f.sum
		key := recordKey(o.Log, stream, seq)
		if seq == 1 && rec.WALFirst != 1 {
			return problem("%s: walFirst is %d: the stream's events 1 to %d are missing", key, rec.WALFirst, rec.WALFirst-1)
		}
		if prev != nil {
			if rec.Prev != prev.SHA256 {
				return problem("%s: prev is %s, but %s has SHA-256 %s: the chain is broken", key, rec.Prev, prev.Key, prev.SHA256)
			}
			if rec.WALFirst != prev.Record.WALLast+1 {
				return problem("%s: walFirst is %d, but %s ended at %d: events are missing or repeated", key, rec.WALFirst, prev.Key, prev.Record.WALLast)
			}
			if gap := rec.FirstEvent.Sub(prev.Record.LastEvent); gap > o.MaxGap {
				sr.Gaps = append(sr.Gaps, Gap{After: prev.Key, Before: key, From: prev.Record.LastEvent, To: rec.FirstEvent, Length: gap})
			}
		}
		cited[rec.Segment] = true
		objs := l.segments[stream][rec.Segment]
		if size, ok := objs[eventsObject]; !ok || size != rec.CiphertextSize {
			return problem("%s: %s%s is missing or not %d bytes (listed: %v, %d bytes)", key, segmentDir(o.Log, stream, rec.Segment), eventsObject, rec.CiphertextSize, ok, size)
		}
		want := map[string]bool{eventsObject: true}
		for _, k := range rec.Keys {
			want["keys/"+k] = true
			if _, ok := objs["keys/"+k]; !ok {
				return problem("%s: key object %s%s is missing", key, segmentDir(o.Log, stream, rec.Segment), "keys/"+k)
			}
		}
		for name := range objs {
			if !want[name] {
				return problem("%s%s: an object the record %s does not name", segmentDir(o.Log, stream, rec.Segment), name, key)
			}
		}
		if filter.overlaps(rec.FirstEvent, rec.LastEvent) {
			if err := checkSegment(ctx, st, o.Log, stream, rec); err != nil {
				return problem("%s: %v", key, err)
			}
			sr.SegmentsRead++
		}
		if sr.Segments == 0 {
			sr.First = rec.FirstEvent
		}
		if rec.LastEvent.After(sr.Last) {
			sr.Last = rec.LastEvent
		}
		sr.Segments++
		sr.Events += rec.Events
		prev = &Head{Record: rec, Key: key, SHA256: sum}
		return true
	})
	if werr != nil && sr.Problem == "" {
		sr.Problem = werr.Error()
	}
	if sr.Problem != "" {
		return sr, firstKey
	}
	sr.Head = prev
	for s := range seqs {
		if s >= seq {
			sr.Problem = fmt.Sprintf("%s: a record past a gap in the chain (seq %d is missing)", recordKey(o.Log, stream, s), seq)
			return sr, firstKey
		}
	}
	var uncited []string
	for seg := range l.segments[stream] {
		if !cited[seg] {
			uncited = append(uncited, seg)
		}
	}
	slices.Sort(uncited)
	// An interrupted seal leaves segments numbered head+1 only (the seal
	// after it takes that seq again); one numbered further is what is
	// left when newest records were removed.
	for _, seg := range uncited {
		dir := segmentDir(o.Log, stream, seg)
		n, err := strconv.ParseInt(strings.SplitN(seg, "-", 2)[0], 10, 64)
		switch {
		case err != nil:
			sr.Problem = fmt.Sprintf("%s: not a segment directory name (<seq>-<nonce>)", dir)
		case n > last+1:
			sr.Problem = fmt.Sprintf("%s: a segment of seq %d, but the chain ends at seq %d: records were removed from its end", dir, n, last)
		case n == last+1:
			sr.Warnings = append(sr.Warnings, fmt.Sprintf("%s: no record cites this segment: an interrupted seal (whose events are sealed again), or the newest record was removed", dir))
		default:
			sr.Warnings = append(sr.Warnings, fmt.Sprintf("%s: no record cites this segment (an interrupted seal; its events were sealed again)", dir))
		}
		if sr.Problem != "" {
			return sr, firstKey
		}
	}
	return sr, firstKey
}

// checkSegment reads a segment's bytes and compares them with its record.
func checkSegment(ctx context.Context, st Store, log, stream string, rec evidence.AuditSegment) error {
	key := segmentDir(log, stream, rec.Segment) + eventsObject
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, rec.CiphertextSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != rec.CiphertextSize || sum != rec.CiphertextSHA256 {
		return fmt.Errorf("%w: %s is %d bytes with SHA-256 %s, but the record says %d bytes with %s", ErrTampered, key, n, sum, rec.CiphertextSize, rec.CiphertextSHA256)
	}
	return nil
}
