package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// SearchOptions configure Search.
type SearchOptions struct {
	Log    string
	Filter Filter
	// Trusted are the keys records must be signed by; required.
	Trusted []evidence.PublicKey
	// Unwrappers are the key providers tried, in order, on each key
	// object of a segment.
	Unwrappers []envelope.Unwrapper
}

// Match is one event found.
type Match struct {
	Stream string
	Time   time.Time
	// JSON is the event as the API server sent it (compacted).
	JSON []byte
}

// SearchResult says what Search read.
type SearchResult struct {
	Matches []Match
	// Segments is how many segments were decrypted; Events how many
	// events they held.
	Segments, Events int64
}

// Search returns the events matching o.Filter, sorted by time (then
// stream, then order in the stream). It walks each stream's chain (every
// record's signature and link checked) and decrypts only the segments
// whose time range overlaps the filter's; a segment's events are used
// only after its AEAD tags, plaintext digest and count are checked.
func Search(ctx context.Context, st Store, o SearchOptions) (SearchResult, error) {
	var res SearchResult
	if len(o.Trusted) == 0 {
		return res, errors.New("audit search: a trusted key is required")
	}
	if len(o.Unwrappers) == 0 {
		return res, errors.New("audit search: no key provider to unwrap segments with")
	}
	streams, err := Streams(ctx, st, o.Log)
	if err != nil {
		return res, fmt.Errorf("audit search: %w", err)
	}
	// A stream that fails is named and left out; the others are searched.
	var failed []error
	for _, stream := range streams {
		ms, segs, evs, err := searchStream(ctx, st, o, stream)
		if err != nil {
			failed = append(failed, fmt.Errorf("stream %s: %w", stream, err))
			continue
		}
		res.Segments += segs
		res.Events += evs
		res.Matches = append(res.Matches, ms...)
	}
	slices.SortStableFunc(res.Matches, func(a, b Match) int { return a.Time.Compare(b.Time) })
	if len(failed) > 0 {
		return res, fmt.Errorf("audit search: %w", errors.Join(failed...))
	}
	return res, nil
}

// searchStream walks one stream's chain and searches the segments in
// range. A record past a gap in the chain fails it: the walk must not stop
// silently before the end.
func searchStream(ctx context.Context, st Store, o SearchOptions, stream string) (ms []Match, segments, events int64, err error) {
	prefix := chainPrefix(o.Log, stream)
	have := map[int64]bool{}
	for obj, err := range st.List(ctx, prefix) {
		if err != nil {
			return nil, 0, 0, fmt.Errorf("list %s: %w", prefix, err)
		}
		if n, ok := parseRecordKey(prefix, obj.Key); ok {
			have[n] = true
		}
	}
	last := int64(0)
	for have[last+1] {
		last++
	}
	for n := range have {
		if n > last {
			return nil, 0, 0, fmt.Errorf("%w: %s is past a gap in the chain (seq %d is missing; run audit verify)", ErrTampered, recordKey(o.Log, stream, n), last+1)
		}
	}
	var prev *Head
	werr := walkRecords(ctx, st, o.Log, stream, last, o.Trusted, func(seq int64, f fetched) bool {
		if f.err != nil {
			err = f.err
			return false
		}
		rec, key := f.rec, recordKey(o.Log, stream, seq)
		switch {
		case prev == nil && rec.WALFirst != 1:
			err = fmt.Errorf("%w: %s: walFirst is %d: the stream's first events are missing (run audit verify)", ErrTampered, key, rec.WALFirst)
			return false
		case prev != nil && (rec.Prev != prev.SHA256 || rec.WALFirst != prev.Record.WALLast+1):
			err = fmt.Errorf("%w: %s does not follow %s (run audit verify)", ErrTampered, key, prev.Key)
			return false
		}
		prev = &Head{Record: rec, Key: key, SHA256: f.sum}
		if !o.Filter.overlaps(rec.FirstEvent, rec.LastEvent) {
			return true
		}
		found, serr := searchSegment(ctx, st, o, stream, rec)
		if serr != nil {
			err = fmt.Errorf("%s: %w", key, serr)
			return false
		}
		segments++
		events += rec.Events
		ms = append(ms, found...)
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return nil, 0, 0, err
	}
	return ms, segments, events, nil
}

// openSegmentKey unwraps a segment's data key with the first key object
// and provider that work.
func openSegmentKey(ctx context.Context, st Store, o SearchOptions, stream string, rec evidence.AuditSegment) (envelope.DataKey, error) {
	id := segmentID(o.Log, stream, rec.Segment)
	var errs []error
	for _, name := range rec.Keys {
		key := segmentDir(o.Log, stream, rec.Segment) + "keys/" + name
		data, err := readAll(ctx, st, key, 64<<10)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ko, err := envelope.ReadKeyObject(bytes.NewReader(data))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		for _, u := range o.Unwrappers {
			dk, err := envelope.OpenKey(ctx, u, id, ko)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				continue
			}
			if dk.ID() != rec.DataKeyID {
				dk.Destroy()
				errs = append(errs, fmt.Errorf("%s: %w: the data key is not the one the record names", key, ErrTampered))
				continue
			}
			return dk, nil
		}
	}
	return envelope.DataKey{}, fmt.Errorf("%w: %w", errNoKey, errors.Join(errs...))
}

var errNoKey = errors.New("no key provider could unwrap the segment's data key")

func searchSegment(ctx context.Context, st Store, o SearchOptions, stream string, rec evidence.AuditSegment) ([]Match, error) {
	dk, err := openSegmentKey(ctx, st, o, stream, rec)
	if err != nil {
		return nil, err
	}
	defer dk.Destroy()
	key := segmentDir(o.Log, stream, rec.Segment) + eventsObject
	rc, err := st.Get(ctx, key, store.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	er, err := envelope.NewReader(rc, dk, envelope.Expect{
		Backup: segmentID(o.Log, stream, rec.Segment), Artifact: "events.jsonl",
		Result: envelope.Result{PlaintextSize: rec.PlaintextSize, PlaintextSHA256: rec.PlaintextSHA256, CiphertextSize: rec.CiphertextSize, CiphertextSHA256: rec.CiphertextSHA256},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer er.Close()
	br := bufio.NewReaderSize(er, 1<<20)
	var out []Match
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An event longer than the buffer: read the rest of its line.
			full := bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		n++
		var f eventFields
		ev := bytes.TrimSuffix(line, []byte{'\n'})
		if err := json.Unmarshal(ev, &f); err != nil {
			return nil, fmt.Errorf("%w: %s: event %d is not JSON", ErrTampered, key, n)
		}
		t := f.time(rec.FirstEvent)
		if o.Filter.match(&f, t) {
			out = append(out, Match{Stream: stream, Time: t, JSON: bytes.Clone(ev)})
		}
	}
	// io.EOF from the reader means every tag, the size and the digests
	// checked; only now are the matches released.
	if n != rec.Events {
		return nil, fmt.Errorf("%w: %s holds %d events, the record says %d", ErrTampered, key, n, rec.Events)
	}
	return out, nil
}
