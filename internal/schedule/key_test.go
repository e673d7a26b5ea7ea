package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestTickKey(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schedule string
		tick     time.Time
		want     string
	}{
		{"nightly-backup", time.Date(2026, 1, 10, 2, 0, 0, 0, time.UTC), "runs/nightly-backup/20260110T020000Z.json"},
		{"s", time.Date(2026, 11, 1, 1, 30, 0, 0, ny), "runs/s/20261101T053000Z.json"},                // 01:30 EDT
		{"s", time.Date(2026, 11, 1, 1, 30, 0, 0, ny).Add(time.Hour), "runs/s/20261101T063000Z.json"}, // 01:30 EST: another key
		{"s", time.Date(2026, 1, 10, 2, 0, 5, 999_999_999, time.UTC), "runs/s/20260110T020005Z.json"}, // a fraction is left out
	}
	for _, tt := range tests {
		got := TickKey(tt.schedule, tt.tick)
		if got != tt.want {
			t.Errorf("TickKey(%q, %s) = %q, want %q", tt.schedule, tt.tick, got, tt.want)
			continue
		}
		s, tick, err := ParseTickKey(got)
		if err != nil || s != tt.schedule || !tick.Equal(tt.tick.Truncate(time.Second)) || tick.Location() != time.UTC {
			t.Errorf("ParseTickKey(%q) = %q, %s, %v; want %q, %s", got, s, tick, err, tt.schedule, tt.tick.Truncate(time.Second))
		}
	}
}

func TestParseTickKeyRefuses(t *testing.T) {
	tests := []struct {
		key, why string
	}{
		{"", "not under runs/"},
		{"run/s/20260110T020000Z.json", "not under runs/"},
		{"/runs/s/20260110T020000Z.json", "not under runs/"},
		{"runs/20260110T020000Z.json", "not two path elements"},
		{"runs/a/b/20260110T020000Z.json", "not two path elements"},
		{"runs//20260110T020000Z.json", "schedule name"},
		{"runs/Nightly/20260110T020000Z.json", "schedule name"},
		{"runs/-s/20260110T020000Z.json", "schedule name"},
		{"runs/" + strings.Repeat("a", 64) + "/20260110T020000Z.json", "schedule name"},
		{"runs/s/20260110T020000Z", "no .json suffix"},
		{"runs/s/20260110T020000Z.json.tmp", "no .json suffix"},
		{"runs/s/20260110T020000.json", "bad tick"},
		{"runs/s/20260110T020000+0000.json", "bad tick"},
		{"runs/s/2026-01-10T02:00:00Z.json", "bad tick"},
		{"runs/s/20261310T020000Z.json", "bad tick"},
		{"runs/s/20260230T020000Z.json", "bad tick"},
		{"runs/s/20260110T250000Z.json", "bad tick"},
		{"runs/s/20260110t020000Z.json", "bad tick"},
		{"runs/s/20260110T020000.5Z.json", "bad tick"},
		{"runs/s/.json", "bad tick"},
	}
	for _, tt := range tests {
		s, tick, err := ParseTickKey(tt.key)
		if err == nil {
			t.Errorf("ParseTickKey(%q) = %q, %s; want an error", tt.key, s, tick)
			continue
		}
		if !strings.Contains(err.Error(), tt.why) || !strings.HasPrefix(err.Error(), "parse tick key ") {
			t.Errorf("ParseTickKey(%q): error %q, want one containing %q", tt.key, err, tt.why)
		}
	}
}
