package main

import (
	"flag"
	"time"

	"github.com/citytwin/citytwin/twin/timeline"
)

// replayConfig holds the flags of the replay timeline (issue 17).
type replayConfig struct {
	interval, retention, keep, buildEvery, flush time.Duration
}

func addReplayFlags(fs *flag.FlagSet) *replayConfig {
	c := &replayConfig{}
	fs.DurationVar(&c.interval, "replay-interval", 5*time.Minute, "time between replay checkpoints (full state of the live layers); a snapshot reads the one before T and the changes since")
	fs.DurationVar(&c.retention, "replay-retention", 48*time.Hour, "how long every change is kept for replay; further back a snapshot is the checkpoint before T (exact to --replay-interval)")
	fs.DurationVar(&c.keep, "replay-keep", 7*24*time.Hour, "how long replay checkpoints and building versions are kept (at least --replay-retention)")
	fs.DurationVar(&c.buildEvery, "replay-build-every", 10*time.Second, "how often missing or stale replay checkpoints are built (a change older than a checkpoint makes it stale)")
	fs.DurationVar(&c.flush, "replay-flush-interval", time.Second, "how often recorded changes are written to the replay timeline; what a crash catches unwritten is read again from the change log at the next start (or by the next leader) while the log holds it")
	return c
}

func (c *replayConfig) options() timeline.Options {
	return timeline.Options{Interval: c.interval, Retention: c.retention, CheckpointRetention: c.keep, BuildEvery: c.buildEvery, FlushInterval: c.flush}
}
