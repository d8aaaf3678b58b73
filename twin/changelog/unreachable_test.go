package changelog

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/citytwin/citytwin/twin"
)

// TestUnreachable: a JetStream that does not answer for now is retried by
// the follower; a gap or an unreadable record stops it.
func TestUnreachable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("changelog: consumer from 5: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("changelog: stream: %w", jetstream.ErrNoStreamResponse), true},
		{nats.ErrTimeout, true},
		{fmt.Errorf("x: %w", nats.ErrNoResponders), true},
		{&jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 404, Description: "stream not found"}, false},
		{fmt.Errorf("%w: the log restarts after 9", twin.ErrSeqGap), false},
		{errors.New("changelog: record 7: malformed"), false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
