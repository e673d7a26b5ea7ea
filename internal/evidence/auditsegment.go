package evidence

import (
	"errors"
	"fmt"
	"time"
)

// AuditSegmentFormat is the format of an audit segment record
// (docs/format.md §8.4).
const AuditSegmentFormat = "lifeboat.dev/audit-segment/v1"

// MaxAuditSegmentRecordSize bounds a segment record.
const MaxAuditSegmentRecordSize = 64 << 10

// AuditSegment is the signed record of one sealed audit segment: the
// commit point of the segment and a link of its stream's hash chain.
type AuditSegment struct {
	Log, Stream string
	Seq         int64
	// Prev is the hex SHA-256 of record Seq-1's stored bytes; "" for seq 1.
	Prev string
	// Segment is "<seq>-<nonce>", the directory under segments/.
	Segment               string
	Events                int64
	FirstEvent, LastEvent time.Time
	WALFirst, WALLast     int64
	// WALID names the write-ahead log the events came from (a random ID
	// made with its directory): a restart trims its WAL only by records
	// of its own.
	WALID            string
	PlaintextSize    int64
	PlaintextSHA256  string
	CiphertextSize   int64
	CiphertextSHA256 string
	DataKeyID        string
	// Keys are the key object names under keys/, one per key provider.
	Keys     []string
	SealedAt time.Time

	Signer, PublicKey, Signature string
}

func (a AuditSegment) tree(withSignature bool) map[string]any {
	ks := make([]any, len(a.Keys))
	for i, k := range a.Keys {
		ks[i] = k
	}
	m := map[string]any{
		"format": AuditSegmentFormat, "log": a.Log, "stream": a.Stream, "seq": a.Seq, "prev": a.Prev,
		"segment": a.Segment, "events": a.Events,
		"firstEvent": formatTime(a.FirstEvent), "lastEvent": formatTime(a.LastEvent),
		"walFirst": a.WALFirst, "walLast": a.WALLast, "walId": a.WALID,
		"plaintextSize": a.PlaintextSize, "plaintextSHA256": a.PlaintextSHA256,
		"ciphertextSize": a.CiphertextSize, "ciphertextSHA256": a.CiphertextSHA256,
		"dataKeyId": a.DataKeyID, "keys": ks, "sealedAt": formatTime(a.SealedAt),
		"signer": a.Signer, "publicKey": a.PublicKey,
	}
	if withSignature {
		m["signature"] = a.Signature
	}
	return m
}

func (a AuditSegment) validate() error {
	for _, f := range []struct{ name, v string }{{"log", a.Log}, {"stream", a.Stream}, {"segment", a.Segment}} {
		if err := validID(f.v); err != nil {
			return &fieldError{f.name, err.Error()}
		}
	}
	switch {
	case a.Seq < 1 || a.Seq > maxSeq:
		return &fieldError{"seq", fmt.Sprintf("%d: want 1 to %d", a.Seq, int64(maxSeq))}
	case a.Seq == 1 && a.Prev != "":
		return &fieldError{"prev", "must be empty for seq 1"}
	case a.Seq > 1 && !isHex(a.Prev, 64):
		return &fieldError{"prev", "want 64 lowercase hex digits"}
	case a.Events < 1:
		return &fieldError{"events", fmt.Sprintf("%d: want at least 1", a.Events)}
	case a.WALFirst < 1 || a.WALLast-a.WALFirst+1 != a.Events:
		return &fieldError{"walLast", fmt.Sprintf("walFirst %d to walLast %d is not %d events", a.WALFirst, a.WALLast, a.Events)}
	case a.LastEvent.Before(a.FirstEvent):
		return &fieldError{"lastEvent", "before firstEvent"}
	case a.PlaintextSize < 1 || a.CiphertextSize < 1:
		return &fieldError{"ciphertextSize", "sizes must be positive"}
	case !isHex(a.PlaintextSHA256, 64):
		return &fieldError{"plaintextSHA256", "want 64 lowercase hex digits"}
	case !isHex(a.CiphertextSHA256, 64):
		return &fieldError{"ciphertextSHA256", "want 64 lowercase hex digits"}
	case !isHex(a.WALID, 16):
		return &fieldError{"walId", "want 16 lowercase hex digits"}
	case !isHex(a.DataKeyID, 32):
		return &fieldError{"dataKeyId", "want 32 lowercase hex digits"}
	case len(a.Keys) == 0:
		return &fieldError{"keys", "no key object"}
	}
	for i, k := range a.Keys {
		if err := validID(k); err != nil {
			return &fieldError{fmt.Sprintf("keys[%d]", i), err.Error()}
		}
	}
	return nil
}

// SignAuditSegment signs a and returns its canonical JSON.
func (s *Signer) SignAuditSegment(a AuditSegment) ([]byte, error) {
	a.FirstEvent, a.LastEvent, a.SealedAt = a.FirstEvent.UTC(), a.LastEvent.UTC(), a.SealedAt.UTC()
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("evidence: sign audit segment record: %w", err)
	}
	a.Signer, a.PublicKey = s.KeyID(), s.pub.Base64()
	t := a.tree(false)
	msg, err := appendCanonical(nil, t, "")
	if err != nil {
		return nil, fmt.Errorf("evidence: sign audit segment record: %w", err)
	}
	if t["signature"], err = s.sign(msg); err != nil {
		return nil, fmt.Errorf("evidence: sign audit segment record: %w", err)
	}
	return appendCanonical(nil, t, "")
}

// ParseAuditSegment parses and checks a segment record: canonical text,
// fields, and the signature by one of trusted (which must not be empty).
// It does not check the record's place in its chain: the caller compares
// log, stream, seq and prev with the key it read and the record before.
func ParseAuditSegment(data []byte, trusted ...PublicKey) (AuditSegment, error) {
	if len(trusted) == 0 {
		return AuditSegment{}, errors.New("no trusted key to check an audit segment record with")
	}
	if len(data) > MaxAuditSegmentRecordSize {
		return AuditSegment{}, fmt.Errorf("%d bytes, more than %d", len(data), MaxAuditSegmentRecordSize)
	}
	v, err := parseCanonical(data)
	if err != nil {
		return AuditSegment{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return AuditSegment{}, &fieldError{"", "not a JSON object"}
	}
	d := &decoder{obj: obj}
	if f := d.string("format"); d.err == nil && f != AuditSegmentFormat {
		return AuditSegment{}, &fieldError{"format", fmt.Sprintf("%q: want %q", f, AuditSegmentFormat)}
	}
	a := AuditSegment{
		Log: d.string("log"), Stream: d.string("stream"), Seq: d.int("seq"), Prev: d.string("prev"),
		Segment: d.string("segment"), Events: d.int("events"),
		FirstEvent: d.time("firstEvent"), LastEvent: d.time("lastEvent"),
		WALFirst: d.int("walFirst"), WALLast: d.int("walLast"), WALID: d.string("walId"),
		PlaintextSize: d.int("plaintextSize"), PlaintextSHA256: d.string("plaintextSHA256"),
		CiphertextSize: d.int("ciphertextSize"), CiphertextSHA256: d.string("ciphertextSHA256"),
		DataKeyID: d.string("dataKeyId"), Keys: d.strings("keys"), SealedAt: d.time("sealedAt"),
		Signer: d.string("signer"), PublicKey: d.string("publicKey"), Signature: d.string("signature"),
	}
	d.noOthers()
	if d.err != nil {
		return AuditSegment{}, d.err
	}
	if err := a.validate(); err != nil {
		return AuditSegment{}, err
	}
	pub, err := checkSignature(obj, a.Signer, a.PublicKey, a.Signature)
	if err != nil {
		return AuditSegment{}, err
	}
	if !containsKey(trusted, pub) {
		return AuditSegment{}, &fieldError{"publicKey", fmt.Sprintf("signed by key %s, which is not one of the trusted keys (%s)", a.Signer, keyIDs(trusted))}
	}
	return a, nil
}

// AuditSegmentPublicKey returns the public key a segment record names,
// unchecked: for a verifier given no trusted key, which then trusts the
// first record's key for the whole stream (and says so).
func AuditSegmentPublicKey(data []byte) (PublicKey, error) {
	if len(data) > MaxAuditSegmentRecordSize {
		return PublicKey{}, fmt.Errorf("%d bytes, more than %d", len(data), MaxAuditSegmentRecordSize)
	}
	v, err := parseCanonical(data)
	if err != nil {
		return PublicKey{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return PublicKey{}, &fieldError{"", "not a JSON object"}
	}
	s, _ := obj["publicKey"].(string)
	pub, err := decodePublicKey(s)
	if err != nil {
		return PublicKey{}, &fieldError{"publicKey", err.Error()}
	}
	return pub, nil
}
