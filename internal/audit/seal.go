package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// Sealer turns closed WAL files into committed segments of one stream.
type Sealer struct {
	Log, Stream string
	// WALID is the WAL's ID, recorded in each record.
	WALID string
	Store Store
	// Wrappers wrap each segment's data key, one key object each (the
	// AuditLog's key providers, in order).
	Wrappers []envelope.Wrapper
	Signer   *evidence.Signer
	// Retention is how long every object is locked.
	Retention time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// logf logs through Logger, if set.
func (s *Sealer) logf(msg string, args ...any) {
	if s.Logger != nil {
		s.Logger.Warn(msg, args...)
	}
}

// seal writes f as the segment after head (nil for the stream's first)
// and commits its record. It does not touch the WAL.
func (s *Sealer) seal(ctx context.Context, f walFile, head *Head) (Head, error) {
	now := s.Now().UTC()
	seq, prev := int64(1), ""
	if head != nil {
		seq, prev = head.Record.Seq+1, head.SHA256
		if uint64(head.Record.WALLast)+1 != f.first {
			return Head{}, fmt.Errorf("seal %s: it starts at index %d, but the stream's head %s ends at %d", f.path, f.first, head.Key, head.Record.WALLast)
		}
	}
	// An earlier attempt may have committed this seq and lost the reply
	// (or its read-back failed): a record there that is ours for exactly
	// this file's events is the commit; any other is another writer's.
	key := recordKey(s.Log, s.Stream, seq)
	if there, err := readAll(ctx, s.Store, key, evidence.MaxAuditSegmentRecordSize); err == nil {
		rec, perr := evidence.ParseAuditSegment(there, s.Signer.PublicKey())
		if perr == nil && rec.Log == s.Log && rec.Stream == s.Stream && rec.Seq == seq && rec.Prev == prev &&
			rec.WALID == s.WALID && rec.WALFirst == int64(f.first) && rec.WALLast == int64(f.last) {
			if sum, err := walPlaintextSHA256(f); err == nil && sum == rec.PlaintextSHA256 {
				s.logf("audit segment already committed by an earlier attempt; adopted", "key", key)
				return Head{Record: rec, Key: key, SHA256: evidence.Hash(there)}, nil
			}
		}
		return Head{}, fmt.Errorf("seal %s: %s: %w: another writer committed this seq of stream %s (two replicas with one --identity?)", f.path, key, store.ErrExists, s.Stream)
	} else if !errors.Is(err, store.ErrNotFound) {
		return Head{}, fmt.Errorf("seal %s: %w", f.path, err)
	}
	var nonce [4]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return Head{}, fmt.Errorf("seal %s: nonce: %w", f.path, err)
	}
	segment := fmt.Sprintf("%010d-%s", seq, hex.EncodeToString(nonce[:]))
	id := segmentID(s.Log, s.Stream, segment)
	dir := segmentDir(s.Log, s.Stream, segment)
	retain := now.Add(s.Retention)

	dk, err := envelope.NewDataKey()
	if err != nil {
		return Head{}, fmt.Errorf("seal %s: data key: %w", f.path, err)
	}
	defer dk.Destroy()
	var keyNames []string
	var kek envelope.KeyObject
	for i, w := range s.Wrappers {
		ko, err := envelope.SealKey(ctx, w, id, dk, now)
		if err != nil {
			return Head{}, fmt.Errorf("seal %s: wrap the data key (key provider %d): %w", f.path, i+1, err)
		}
		data, err := ko.Marshal()
		if err != nil {
			return Head{}, fmt.Errorf("seal %s: key object: %w", f.path, err)
		}
		key := dir + "keys/" + ko.Name()
		if _, err := s.Store.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: retain}); err != nil {
			return Head{}, fmt.Errorf("seal %s: write %s: %w", f.path, key, err)
		}
		keyNames = append(keyNames, ko.Name())
		if i == 0 {
			kek = ko
		}
	}

	// Frames → JSON lines → envelope → store, streaming.
	var first, last time.Time
	var events int64
	pr, pw := io.Pipe()
	var res envelope.Result
	done := make(chan struct{})
	go func() {
		// The writer writes its header at once: it must run beside the Put
		// that reads the pipe.
		defer close(done)
		ew, err := envelope.NewWriter(pw, dk, envelope.Options{Backup: id, Artifact: "events.jsonl", KEK: kek.KEK, Created: now})
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		bw := bufio.NewWriterSize(ew, 1<<20)
		err = readWALFile(f, func(fr Frame) error {
			if events == 0 || fr.Time.Before(first) {
				first = fr.Time
			}
			if events == 0 || fr.Time.After(last) {
				last = fr.Time
			}
			events++
			if _, err := bw.Write(fr.Payload); err != nil {
				return err
			}
			return bw.WriteByte('\n')
		})
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			ew.Abort(err)
			pw.CloseWithError(err)
			return
		}
		err = ew.Close()
		res = ew.Result()
		pw.CloseWithError(err)
	}()
	segKey := dir + eventsObject
	info, err := s.Store.Put(ctx, segKey, pr, store.PutOptions{RetainUntil: retain})
	pr.CloseWithError(errors.New("segment write ended"))
	<-done
	if err != nil {
		return Head{}, fmt.Errorf("seal %s: write %s: %w", f.path, segKey, err)
	}
	if info.SHA256 != "" && info.SHA256 != res.CiphertextSHA256 || info.Size != res.CiphertextSize {
		return Head{}, fmt.Errorf("seal %s: %w: the store recorded %s as %d bytes with SHA-256 %s, but %d bytes with %s were written", f.path, store.ErrIntegrity, segKey, info.Size, info.SHA256, res.CiphertextSize, res.CiphertextSHA256)
	}
	if events != f.events {
		return Head{}, fmt.Errorf("seal %s: read %d events, want %d", f.path, events, f.events)
	}
	rec := evidence.AuditSegment{
		Log: s.Log, Stream: s.Stream, Seq: seq, Prev: prev, Segment: segment, Events: events,
		FirstEvent: first, LastEvent: last, WALFirst: int64(f.first), WALLast: int64(f.last), WALID: s.WALID,
		PlaintextSize: res.PlaintextSize, PlaintextSHA256: res.PlaintextSHA256,
		CiphertextSize: res.CiphertextSize, CiphertextSHA256: res.CiphertextSHA256,
		DataKeyID: dk.ID(), Keys: keyNames, SealedAt: now,
	}
	data, err := s.Signer.SignAuditSegment(rec)
	if err != nil {
		return Head{}, fmt.Errorf("seal %s: %w", f.path, err)
	}
	if _, err := s.Store.Put(ctx, key, bytes.NewReader(data), store.PutOptions{RetainUntil: retain, SHA256: evidence.Hash(data)}); err != nil {
		// The Put may have committed and lost its reply (a timeout after
		// the upload): the record there with our bytes is our commit.
		there, rerr := readAll(ctx, s.Store, key, evidence.MaxAuditSegmentRecordSize)
		switch {
		case rerr == nil && bytes.Equal(there, data):
			s.logf("audit segment record committed although its write reported an error", "key", key, "err", err)
		case rerr == nil:
			return Head{}, fmt.Errorf("seal %s: commit %s: %w: another writer committed this seq of stream %s (two replicas with one --identity?)", f.path, key, store.ErrExists, s.Stream)
		default:
			return Head{}, fmt.Errorf("seal %s: commit %s: %w", f.path, key, err)
		}
	}
	signed, err := evidence.ParseAuditSegment(data, s.Signer.PublicKey())
	if err != nil {
		return Head{}, fmt.Errorf("seal %s: the record just signed does not verify: %w", f.path, err)
	}
	return Head{Record: signed, Key: key, SHA256: evidence.Hash(data)}, nil
}
