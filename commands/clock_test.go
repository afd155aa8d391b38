package commands

import (
	"os"
	"strconv"
	"time"
)

// scriptClock is the clock of commands run by testscript: QVM_TEST_NOW
// (UNIX seconds) fixes it, so scripts can move time (rule expiry).
func scriptClock() func() time.Time {
	if s := os.Getenv("QVM_TEST_NOW"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return func() time.Time { return time.Unix(n, 0) }
		}
	}
	return time.Now
}
