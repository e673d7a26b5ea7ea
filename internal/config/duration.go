package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Day is the length of the "d" unit of a Duration: 24 hours, regardless of
// daylight saving time.
const Day = 24 * time.Hour

// Duration is a length of time written either as a Go duration ("90s",
// "15m", "1h30m") or as a whole number of days ("90d", "2190d"). Negative
// durations are rejected when parsing; whether zero is allowed depends on
// the field (no field of this package accepts a zero it was given
// explicitly). A Duration marshals back to text: whole days as "Nd", other
// values in Go form without trailing zero units ("1h30m", not "1h30m0s").
type Duration time.Duration

// ParseDuration parses the text form of a Duration.
func ParseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, errors.New(`empty duration; want a Go duration such as "15m" or "1h30m", or whole days such as "90d"`)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && isDigits(days) {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(Day) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return Duration(time.Duration(n) * Day), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q; want a Go duration such as "15m" or "1h30m", or whole days such as "90d"`, s)
	}
	return Duration(d), nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns the text form of d, which ParseDuration reads back to the
// same value (for non-negative d).
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%Day == 0 {
		return strconv.FormatInt(int64(td/Day), 10) + "d"
	}
	s := td.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText implements encoding.TextMarshaler (used by encoding/json).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return asTypeError(n, d.parseScalar(n))
}

func (d *Duration) parseScalar(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New(`want a duration such as "15m" or "90d"`)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Timestamp is a point in time written in RFC 3339 form with an explicit
// offset, such as "2025-06-30T00:00:00Z" or "2025-06-30T02:00:00-04:00".
type Timestamp struct {
	time.Time
}

// MarshalYAML implements yaml.Marshaler.
func (t Timestamp) MarshalYAML() (any, error) { return t.Format(time.RFC3339Nano), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Timestamp) UnmarshalYAML(n *yaml.Node) error {
	return asTypeError(n, t.parseScalar(n))
}

func (t *Timestamp) parseScalar(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want an RFC 3339 time such as 2025-06-30T00:00:00Z")
	}
	v, err := time.Parse(time.RFC3339Nano, n.Value)
	if err != nil {
		return fmt.Errorf("invalid time %q; want an RFC 3339 time such as 2025-06-30T00:00:00Z", n.Value)
	}
	t.Time = v
	return nil
}

// Retention is a backup plan's retention: how long every backup is locked
// (Default), and the grandfather-father-son tiers (docs/format.md §1.2):
// the first complete backup of each ISO week, calendar month or calendar
// year (UTC) is locked for Weekly, Monthly or Yearly instead, when longer.
// It is written either as one duration ("35d", Default alone) or as a
// mapping ({default: 35d, monthly: 2190d}). A zero tier is not used.
type Retention struct {
	Default Duration `yaml:"default,omitempty"`
	Weekly  Duration `yaml:"weekly,omitempty"`
	Monthly Duration `yaml:"monthly,omitempty"`
	Yearly  Duration `yaml:"yearly,omitempty"`
}

// Tiered reports whether any tier besides Default is set.
func (r Retention) Tiered() bool { return r.Weekly > 0 || r.Monthly > 0 || r.Yearly > 0 }

// MarshalYAML implements yaml.Marshaler: the one-duration form when no
// tier is set.
func (r Retention) MarshalYAML() (any, error) {
	if !r.Tiered() {
		return r.Default.String(), nil
	}
	type plain Retention
	return plain(r), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Retention) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return asTypeError(n, r.parseShorthand(n))
	}
	type plain Retention
	return n.Decode((*plain)(r))
}

func (r *Retention) parseShorthand(n *yaml.Node) error {
	var d Duration
	if err := d.parseScalar(n); err != nil {
		return fmt.Errorf(`%w, or tiers such as {default: 35d, monthly: 2190d}`, err)
	}
	*r = Retention{Default: d}
	return nil
}

// shorthandParser is implemented by struct types that may also be written
// as one scalar; the schema walker checks a scalar with parseShorthand and
// a mapping as the struct.
type shorthandParser interface {
	parseShorthand(n *yaml.Node) error
}

// scalarParser is implemented by the types that read themselves from one
// YAML scalar. The schema walker calls parseScalar to report a bad value with
// its field path; UnmarshalYAML calls it during decoding.
type scalarParser interface {
	parseScalar(n *yaml.Node) error
}

// asTypeError turns err into a *yaml.TypeError carrying the node's line, so
// that yaml.v3 collects it with its own errors instead of aborting.
func asTypeError(n *yaml.Node, err error) error {
	if err == nil {
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, err)}}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
