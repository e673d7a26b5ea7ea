package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Store is what the audit log needs of a store.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (store.ObjectInfo, error)
	Get(ctx context.Context, key string, opts store.GetOptions) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) iter.Seq2[store.ObjectInfo, error]
}

// ErrTampered marks what the store returned that is not what lifeboat
// wrote: a record that does not verify, a broken link, a segment whose
// digest differs.
var ErrTampered = errors.New("audit log tampered with")

var streamName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// CheckNames checks an AuditLog's name (1–63 bytes) and a stream's (1–40)
// against docs/format.md §8.1.
func CheckNames(log, stream string) error {
	if len(log) > 63 || !streamName.MatchString(log) {
		return fmt.Errorf("audit log name %q: want 1 to 63 of [a-z0-9-], starting and ending with a letter or digit", log)
	}
	if len(stream) > 40 || !streamName.MatchString(stream) {
		return fmt.Errorf("audit stream %q (the replica's identity): want 1 to 40 of [a-z0-9-], starting and ending with a letter or digit", stream)
	}
	return nil
}

func logPrefix(log string) string            { return "audit/" + log + "/" }
func streamPrefix(log, stream string) string { return logPrefix(log) + stream + "/" }
func chainPrefix(log, stream string) string  { return streamPrefix(log, stream) + "chain/" }
func recordKey(log, stream string, seq int64) string {
	return fmt.Sprintf("%s%010d.json", chainPrefix(log, stream), seq)
}
func segmentDir(log, stream, segment string) string {
	return streamPrefix(log, stream) + "segments/" + segment + "/"
}
func segmentID(log, stream, segment string) string { return log + "." + stream + "." + segment }

const eventsObject = "events.lbe"

// parseRecordKey returns the seq of a key under chain/.
func parseRecordKey(prefix, key string) (int64, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	d, ok := strings.CutSuffix(name, ".json")
	if !ok || len(d) != 10 {
		return 0, false
	}
	n, err := strconv.ParseInt(d, 10, 64)
	return n, err == nil && n >= 1
}

// Head is the newest committed record of a stream.
type Head struct {
	Record evidence.AuditSegment
	Key    string
	// SHA256 is the hex SHA-256 of the record's stored bytes.
	SHA256 string
}

// readRecord reads and checks the record of seq: signature by a trusted
// key, and its log, stream and seq against its key.
func readRecord(ctx context.Context, st Store, log, stream string, seq int64, trusted []evidence.PublicKey) (evidence.AuditSegment, string, error) {
	key := recordKey(log, stream, seq)
	data, err := readAll(ctx, st, key, evidence.MaxAuditSegmentRecordSize)
	if err != nil {
		return evidence.AuditSegment{}, "", err
	}
	rec, err := evidence.ParseAuditSegment(data, trusted...)
	if err != nil {
		return evidence.AuditSegment{}, "", fmt.Errorf("%w: %s: %w", ErrTampered, key, err)
	}
	if rec.Log != log || rec.Stream != stream || rec.Seq != seq {
		return evidence.AuditSegment{}, "", fmt.Errorf("%w: %s: the record is log %s stream %s seq %d, not this key's", ErrTampered, key, rec.Log, rec.Stream, rec.Seq)
	}
	return rec, evidence.Hash(data), nil
}

// readAll reads a small object whole, refusing one longer than limit.
func readAll(ctx context.Context, st Store, key string, limit int64) ([]byte, error) {
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is longer than %d bytes", ErrTampered, key, limit)
	}
	return data, nil
}

// ReadHead returns a stream's newest record, checked (nil when the stream
// has none). Its link to the record before is not checked here: `audit
// verify` walks the chain.
func ReadHead(ctx context.Context, st Store, log, stream string, trusted []evidence.PublicKey) (*Head, error) {
	prefix := chainPrefix(log, stream)
	var last int64
	for obj, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		// Keys that are not record keys are not lifeboat's: skipped here
		// (audit verify names them), so that a planted object cannot stop
		// the receiver.
		if seq, ok := parseRecordKey(prefix, obj.Key); ok {
			last = max(last, seq)
		}
	}
	if last == 0 {
		return nil, nil
	}
	rec, sum, err := readRecord(ctx, st, log, stream, last, trusted)
	if err != nil {
		return nil, err
	}
	return &Head{Record: rec, Key: recordKey(log, stream, last), SHA256: sum}, nil
}

// Streams lists the streams of an AuditLog in a store.
func Streams(ctx context.Context, st Store, log string) ([]string, error) {
	prefix := logPrefix(log)
	var out []string
	for obj, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/")
		if len(out) == 0 || out[len(out)-1] != name {
			out = append(out, name)
		}
	}
	return out, nil
}

// Records are read ahead, this many at a time, in windows of this many:
// a year of 5-minute segments is 105,120 records per stream, and one GET
// after another would make an investigation wait on the store's latency.
const (
	readAhead  = 16
	readWindow = 512
)

// fetched is one record read by walkRecords.
type fetched struct {
	rec evidence.AuditSegment
	sum string
	err error
}

// walkRecords reads records 1 to last of a stream (each checked as
// readRecord does) with readAhead GETs in flight, and calls fn for each in
// seq order until fn returns false or ctx ends.
func walkRecords(ctx context.Context, st Store, log, stream string, last int64, trusted []evidence.PublicKey, fn func(seq int64, f fetched) bool) error {
	for lo := int64(1); lo <= last; lo += readWindow {
		hi := min(lo+readWindow-1, last)
		win := make([]fetched, hi-lo+1)
		sem := make(chan struct{}, readAhead)
		var wg sync.WaitGroup
		for i := range win {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				rec, sum, err := readRecord(ctx, st, log, stream, lo+int64(i), trusted)
				win[i] = fetched{rec, sum, err}
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		for i, f := range win {
			if !fn(lo+int64(i), f) {
				return nil
			}
		}
	}
	return nil
}
