package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// RecordFormat is the format of an evidence record (docs/format.md §5.3).
const RecordFormat = "lifeboat.dev/evidence/v1"

// Record kinds lifeboat writes. Other kinds matching [a-z][a-z0-9]{0,31}
// are allowed.
const (
	KindBackup   = "backup"
	KindRotation = "rotation"
	KindDrill    = "drill"
	// KindSchedule is a `lifeboat serve` tick, run or not (docs/format.md §7.3).
	KindSchedule = "schedule"
)

// Record outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomePartial = "partial"
)

const (
	maxRecordSize = 1 << 20
	maxSeq        = 9_999_999_999
	maxKindLen    = 32
	maxIDLen      = 128
)

// Record is one evidence record (docs/format.md §5.3). The JSON tags are
// for display (the CLI's -o json); the stored form is the canonical text
// that Append writes and Verify checks.
type Record struct {
	Format string `json:"format"`
	// Seq is the record's position in the chain, from 1.
	Seq int64 `json:"seq"`
	// Kind is what happened: KindBackup, KindRotation, KindDrill, ...
	Kind string `json:"kind"`
	// ID is the backup, rotation or drill-run ID the record is about.
	ID string `json:"id"`
	// Time is when the record was appended, by the writer's clock.
	Time time.Time `json:"time"`
	// Prev is the hex SHA-256 of the previous record's stored bytes; "" for
	// seq 1.
	Prev    string `json:"prev"`
	Outcome string `json:"outcome"`
	// Subject says what was done: free-form JSON of names, IDs, counts,
	// sizes, digests, times as strings and durations in integer
	// milliseconds. Append accepts any value encoding/json marshals to an
	// object of such values (structs included); records read back hold the
	// tree types map[string]any, []any, string, int64, bool and nil.
	Subject map[string]any `json:"subject"`
	// HIPAA lists the 45 CFR sections cited, e.g. "§164.308(a)(7)(ii)(A)".
	HIPAA     []string `json:"hipaa"`
	Signer    string   `json:"signer"`
	PublicKey string   `json:"publicKey"`
	Signature string   `json:"signature"`
}

// Key returns the key of the record's named copy in a store:
// evidence/<seq>-<kind>-<id>.json.
func (r Record) Key() string { return recordKey(r.Seq, r.Kind, r.ID) }

func recordKey(seq int64, kind, id string) string {
	return fmt.Sprintf("%s%010d-%s-%s.json", evidencePrefix, seq, kind, id)
}

// chainKey is the key of the chain object of seq: evidence/seq/<seq>.json.
func chainKey(seq int64) string { return fmt.Sprintf("%s%010d.json", chainPrefix, seq) }

const (
	evidencePrefix = "evidence/"
	chainPrefix    = "evidence/seq/"
)

// parseChainKey returns the seq of a chain object key.
func parseChainKey(key string) (int64, bool) {
	name, ok := strings.CutPrefix(key, chainPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return 0, false
	}
	return parseSeqDigits(digits)
}

func parseSeqDigits(s string) (int64, bool) {
	if len(s) != 10 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, n >= 1
}

// Hash returns the hex SHA-256 of a record's stored bytes, the value the
// next record's prev holds.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// tree returns the record as a JSON tree, without the signature member
// when withSignature is false.
func (r Record) tree(withSignature bool) (map[string]any, error) {
	subject := map[string]any{}
	if r.Subject != nil {
		t, err := toTree(r.Subject)
		if err != nil {
			return nil, prefixField("subject", err)
		}
		m, ok := t.(map[string]any)
		if !ok {
			return nil, &fieldError{"subject", "not a JSON object"}
		}
		subject = m
	}
	hipaa := make([]any, len(r.HIPAA))
	for i, h := range r.HIPAA {
		hipaa[i] = h
	}
	m := map[string]any{
		"format":    r.Format,
		"seq":       r.Seq,
		"kind":      r.Kind,
		"id":        r.ID,
		"time":      formatTime(r.Time),
		"prev":      r.Prev,
		"outcome":   r.Outcome,
		"subject":   subject,
		"hipaa":     hipaa,
		"signer":    r.Signer,
		"publicKey": r.PublicKey,
	}
	if withSignature {
		m["signature"] = r.Signature
	}
	return m, nil
}

// prefixField puts a *CanonicalError from encoding a field's value under
// that field's path.
func prefixField(field string, err error) error {
	if ce, ok := err.(*CanonicalError); ok {
		p := field
		if ce.Path != "" {
			p = field + "." + ce.Path
		}
		return &fieldError{p, ce.Msg}
	}
	return &fieldError{field, err.Error()}
}

// validateContent checks the fields a caller of Append supplies.
func (r Record) validateContent() error {
	if err := validKind(r.Kind); err != nil {
		return &fieldError{"kind", err.Error()}
	}
	if err := validID(r.ID); err != nil {
		return &fieldError{"id", err.Error()}
	}
	switch r.Outcome {
	case OutcomeSuccess, OutcomeFailure, OutcomePartial:
	default:
		return &fieldError{"outcome", fmt.Sprintf("%q: want success, failure or partial", r.Outcome)}
	}
	for i, h := range r.HIPAA {
		if h == "" {
			return &fieldError{indexPath("hipaa", i), "empty section"}
		}
	}
	return nil
}

// validate checks every field of a complete record except the signature
// itself.
func (r Record) validate() error {
	if r.Format != RecordFormat {
		return &fieldError{"format", fmt.Sprintf("%q: want %q", r.Format, RecordFormat)}
	}
	if r.Seq < 1 || r.Seq > maxSeq {
		return &fieldError{"seq", fmt.Sprintf("%d: want 1 to %d", r.Seq, int64(maxSeq))}
	}
	if err := r.validateContent(); err != nil {
		return err
	}
	switch {
	case r.Seq == 1 && r.Prev != "":
		return &fieldError{"prev", "must be \"\" in the first record"}
	case r.Seq > 1 && !isHex(r.Prev, 64):
		return &fieldError{"prev", fmt.Sprintf("%q is not 64 lowercase hex digits", r.Prev)}
	}
	return nil
}

func validKind(kind string) error {
	if kind == "" || len(kind) > maxKindLen {
		return fmt.Errorf("%q: want 1 to %d characters", kind, maxKindLen)
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if !(c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("%q: want [a-z][a-z0-9]*", kind)
		}
	}
	return nil
}

func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%q: want 1 to %d bytes", id, maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q: byte %d is not one of [A-Za-z0-9._-]", id, i)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// signRecord fills Signer and PublicKey, signs r and returns the record
// with its signature and its canonical text.
func (s *Signer) signRecord(r Record) (Record, []byte, error) {
	r.Signer = s.KeyID()
	r.PublicKey = s.pub.Base64()
	r.Signature = ""
	t, err := r.tree(false)
	if err != nil {
		return Record{}, nil, err
	}
	msg, err := appendCanonical(nil, t, "")
	if err != nil {
		return Record{}, nil, err
	}
	if r.Signature, err = s.sign(msg); err != nil {
		return Record{}, nil, err
	}
	t["signature"] = r.Signature
	data, err := appendCanonical(nil, t, "")
	if err != nil {
		return Record{}, nil, err
	}
	if len(data) > maxRecordSize {
		return Record{}, nil, fmt.Errorf("record is %d bytes, more than %d", len(data), maxRecordSize)
	}
	// Hand back the subject as it reads back from the store.
	r.Subject = t["subject"].(map[string]any)
	return r, data, nil
}

// ParseRecord checks that data is a canonical, well-formed and correctly
// signed evidence record and returns it. It checks the signature against
// the record's own public key only: trust and the chain are Verify's. The
// error (a *CanonicalError or one naming the field) says what is wrong.
func ParseRecord(data []byte) (Record, error) {
	r, _, err := parseRecord(data)
	return r, err
}

// parseRecord is ParseRecord, also returning the signer's public key.
func parseRecord(data []byte) (Record, PublicKey, error) {
	if len(data) > maxRecordSize {
		return Record{}, PublicKey{}, fmt.Errorf("%d bytes, more than %d", len(data), maxRecordSize)
	}
	v, err := parseCanonical(data)
	if err != nil {
		return Record{}, PublicKey{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Record{}, PublicKey{}, &fieldError{"", "not a JSON object"}
	}
	d := decoder{obj: obj}
	d.only("format", "seq", "kind", "id", "time", "prev", "outcome", "subject", "hipaa", "signer", "publicKey", "signature")
	// format first, so a record of another version says so rather than
	// failing on its fields.
	var r Record
	r.Format = d.string("format")
	if d.err == nil && r.Format != RecordFormat {
		return Record{}, PublicKey{}, &fieldError{"format", fmt.Sprintf("%q: want %q (this lifeboat reads no other version)", r.Format, RecordFormat)}
	}
	r.Seq = d.int("seq")
	r.Kind = d.string("kind")
	r.ID = d.string("id")
	r.Time = d.time("time")
	r.Prev = d.string("prev")
	r.Outcome = d.string("outcome")
	r.Subject = d.object("subject")
	r.HIPAA = d.strings("hipaa")
	r.Signer = d.string("signer")
	r.PublicKey = d.string("publicKey")
	r.Signature = d.string("signature")
	d.noOthers()
	if d.err != nil {
		return Record{}, PublicKey{}, d.err
	}
	if err := r.validate(); err != nil {
		return Record{}, PublicKey{}, err
	}
	pub, err := checkSignature(obj, r.Signer, r.PublicKey, r.Signature)
	if err != nil {
		return Record{}, PublicKey{}, err
	}
	return r, pub, nil
}

// checkSignature checks signer, publicKey and signature of a decoded
// object (docs/format.md §5.2) and returns the public key.
func checkSignature(obj map[string]any, signer, publicKey, signature string) (PublicKey, error) {
	pub, err := decodePublicKey(publicKey)
	if err != nil {
		return PublicKey{}, &fieldError{"publicKey", err.Error()}
	}
	if want := KeyID(pub); signer != want {
		return PublicKey{}, &fieldError{"signer", fmt.Sprintf("%q is not the key ID of publicKey (%s)", signer, want)}
	}
	sig, err := decodeSignature(pub, signature)
	if err != nil {
		return PublicKey{}, &fieldError{"signature", err.Error()}
	}
	unsigned := maps.Clone(obj)
	delete(unsigned, "signature")
	msg, err := appendCanonical(nil, unsigned, "")
	if err != nil {
		return PublicKey{}, err
	}
	if !pub.verify(msg, sig) {
		return PublicKey{}, &fieldError{"signature", "does not verify: the signed content was changed, or the signature was made by another key"}
	}
	return pub, nil
}

// decoder reads the members of a decoded object, keeping the first
// problem and remembering which members it read.
type decoder struct {
	obj  map[string]any
	path string
	seen []string
	err  error
}

func (d *decoder) field(name string) string { return joinPath(d.path, name) }

func (d *decoder) get(name string) (any, bool) {
	d.seen = append(d.seen, name)
	if d.err != nil {
		return nil, false
	}
	v, ok := d.obj[name]
	if !ok {
		d.err = &fieldError{d.field(name), "missing"}
		return nil, false
	}
	return v, true
}

func (d *decoder) fail(name, format string, args ...any) {
	if d.err == nil {
		d.err = &fieldError{d.field(name), fmt.Sprintf(format, args...)}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case int64:
		return "an integer"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (d *decoder) string(name string) string {
	v, ok := d.get(name)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(name, "is %s, want a string", typeName(v))
	}
	return s
}

func (d *decoder) int(name string) int64 {
	v, ok := d.get(name)
	if !ok {
		return 0
	}
	n, ok := v.(int64)
	if !ok {
		d.fail(name, "is %s, want an integer", typeName(v))
	}
	return n
}

// optInt reads an optional integer member.
func (d *decoder) optInt(name string) *int64 {
	if _, ok := d.obj[name]; !ok {
		d.seen = append(d.seen, name)
		return nil
	}
	n := d.int(name)
	return &n
}

func (d *decoder) time(name string) time.Time {
	s := d.string(name)
	if d.err != nil {
		return time.Time{}
	}
	t, err := parseTime(s)
	if err != nil {
		d.fail(name, "%v", err)
	}
	return t
}

func (d *decoder) object(name string) map[string]any {
	v, ok := d.get(name)
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(name, "is %s, want an object", typeName(v))
	}
	return m
}

func (d *decoder) array(name string) []any {
	v, ok := d.get(name)
	if !ok {
		return nil
	}
	a, ok := v.([]any)
	if !ok {
		d.fail(name, "is %s, want an array", typeName(v))
	}
	return a
}

func (d *decoder) strings(name string) []string {
	a := d.array(name)
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			d.fail(name, "element %d is %s, want a string", i, typeName(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

// sub returns a decoder for the object element of an array or member.
func (d *decoder) sub(path string, v any) *decoder {
	m, ok := v.(map[string]any)
	if !ok {
		if d.err == nil {
			d.err = &fieldError{path, fmt.Sprintf("is %s, want an object", typeName(v))}
		}
		return &decoder{obj: map[string]any{}, path: path, err: d.err}
	}
	return &decoder{obj: m, path: path}
}

// only fails on the first member (in name order) not among names: a
// changed member name is reported as the unknown name it became rather
// than as the name that went missing.
func (d *decoder) only(names ...string) {
	if d.err != nil {
		return
	}
	var extra []string
	for k := range d.obj {
		if !slices.Contains(names, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		d.err = &fieldError{d.field(extra[0]), "unknown field"}
	}
}

// noOthers fails on members that were not read: readers reject unknown
// fields.
func (d *decoder) noOthers() {
	if d.err != nil {
		return
	}
	var extra []string
	for k := range d.obj {
		if !slices.Contains(d.seen, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		d.err = &fieldError{d.field(extra[0]), "unknown field"}
	}
}

// ValidateID reports whether id is a valid record ID: 1 to 128 bytes of
// [A-Za-z0-9._-].
func ValidateID(id string) error { return validID(id) }
