package writer

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// MetaFeedHWM is the meta key holding the feed's sequence reservation (an
// 8-byte big-endian uint64): no change with a higher seq has ever been
// handed out. At start the feed continues above max(feed_seq, feed_hwm)
// (twin/boot), so after kill -9 no seq a client saw is given to another
// change. See twin.Feed.SetLimit.
const MetaFeedHWM = "feed_hwm"

// DefaultSeqBlock is how many sequence numbers one reservation covers:
// 16.7 million, over five minutes at 50,000 changes/s, so a reservation is
// written rarely and the store may be away for minutes before producers
// wait; a restart skips at most this many numbers (2^29 restarts fit below
// JavaScript's 2^53, the largest integer a browser client reads exactly).
const DefaultSeqBlock = 1 << 24

// ReserveSeqs persists a first reservation above the feed's last sequence
// and sets the feed's limit. Call it after loading the twin (twin/boot) and
// before anything mutates it; Run then keeps reserving ahead of the feed.
func (w *Writer) ReserveSeqs(ctx context.Context) error {
	feed := w.tw.Feed()
	hwm := feed.Last() + w.opts.SeqBlock
	if err := w.putMeta(ctx, MetaFeedHWM, hwm); err != nil {
		return fmt.Errorf("writer: reserve sequence numbers: %w", err)
	}
	feed.SetLimit(hwm, w.opts.SeqBlock/2)
	return nil
}

// reserve persists a new reservation whenever the feed signals that half of
// the current one is used, retrying with backoff while the store is away
// (producers wait once it is used up). When ctx ends it tells the feed that
// no reservation will come.
func (w *Writer) reserve(ctx context.Context) {
	feed := w.tw.Feed()
	defer feed.EndReservations()
	backoff := w.opts.RetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-feed.NeedLimit():
		}
		for {
			hwm := max(feed.Limit(), feed.Last()+w.opts.SeqBlock)
			err := w.putMeta(ctx, MetaFeedHWM, hwm)
			if err == nil {
				feed.SetLimit(hwm, w.opts.SeqBlock/2)
				backoff = w.opts.RetryMin
				break
			}
			w.m.errors.Inc()
			w.log.Warn("cannot persist the feed's sequence reservation; retrying (changes wait once it is used up)",
				"err", err, "last", feed.Last(), "limit", feed.Limit(), "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, w.opts.RetryMax)
		}
	}
}

// putMeta writes one meta value, through WriteBatch for a BatchWriter.
func (w *Writer) putMeta(ctx context.Context, key string, v uint64) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.FlushTimeout)
	defer cancel()
	b := binary.BigEndian.AppendUint64(nil, v)
	if bw, ok := w.st.(BatchWriter); ok {
		return bw.WriteBatch(ctx, nil, nil, nil, key, b)
	}
	return w.st.PutMeta(ctx, key, b)
}
