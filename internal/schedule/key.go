package schedule

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// tickLayout is the form of a tick in a claim's name: UTC, whole seconds.
const tickLayout = "20060102T150405Z"

// TickKey returns the name of the object that claims tick of schedule,
// relative to the store's prefix:
// runs/<schedule>/<tick in UTC as 20060102T150405Z>.json. A fraction of a
// second in tick is left out; cron ticks never have one.
func TickKey(schedule string, tick time.Time) string {
	return "runs/" + schedule + "/" + tick.UTC().Format(tickLayout) + ".json"
}

// ParseTickKey returns the schedule and the tick (in UTC) of a name made
// by TickKey. It refuses any other name, including a schedule that is not
// a valid object name and a time not written exactly as TickKey writes it.
func ParseTickKey(key string) (schedule string, tick time.Time, err error) {
	fail := func(why string) (string, time.Time, error) {
		return "", time.Time{}, fmt.Errorf("parse tick key %q: %s; want runs/<schedule>/<%s>.json", key, why, tickLayout)
	}
	rest, ok := strings.CutPrefix(key, "runs/")
	if !ok {
		return fail("not under runs/")
	}
	schedule, file, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(file, "/") {
		return fail("not two path elements under runs/")
	}
	if errs := validation.IsDNS1123Label(schedule); len(errs) > 0 {
		return fail("schedule name: " + strings.Join(errs, "; "))
	}
	stamp, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return fail("no .json suffix")
	}
	tick, err = time.Parse(tickLayout, stamp)
	if err != nil || tick.Format(tickLayout) != stamp {
		return fail(fmt.Sprintf("bad tick %q", stamp))
	}
	return schedule, tick, nil
}
